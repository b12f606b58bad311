"""Quality of the prune pass on SmolLM2-135M with one tuning budget for every method.

Rows: the dense model; the dense model + the same LoRA tuning (ratio 0); PAT, magnitude and
Taylor at 25% of the hidden dimension (P -> FT for the post-hoc two); PAT with every scope
(hidden + heads + FFN); PAT with the hard projection eased in over s0 steps (`ramp=1`); PAT
with its mask proxies starting at 0 as in the reference code (`mask_init=zero`; the pass
starts them from Taylor scores by default).
Every tuned row gets `--steps` steps of `--batch` windows of 128
tokens from the first half of the KJV Bible, with the same loss (`--loss distill` by default:
KL to the dense model, which keeps the out-of-domain corpora from collapsing as they do under
plain next-token loss on one corpus) and, for PAT, the gate frozen at `--freeze-at` of s0
(0.95 by default: in a run this short the 0.8 of the reference code leaves the gate far from
0/1 at the projection, BENCHMARKS.md). Perplexity is scored in fp32 torch on windows
of 128 tokens from the held-out second half of the KJV (in domain) and from the second halves
of the Jargon File and the `pydoc_data` topics (out of domain), up to `--windows` windows each
(tools/bench/metrics.py: the same windows `ember bench --data text:NAME` uses).

Each pruned model is saved as a Hugging Face directory `OUT/<row>/` (config + safetensors +
tokenizer), so `ember compile --model hf:OUT/<row>` builds its artifact for the speed table.
A rerun skips the rows whose `OUT/<row>/quality.json` exists and resumes an interrupted
tuning from `OUT/work/<row>/`.

    python -m ember.tools.research.bench_prune_quality OUT [--steps 120] [--rows pat,magnitude]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ember.compiler.data.tuning import LocalData
from ember.compiler.models.language import CausalLMLogits
from ember.compiler.models.smollm2 import load_smollm2
from ember.passes import PassContext
from ember.passes.prune.structural import StructuralPruning
from ember.progress import Progress
from ember.tools.bench import metrics

WINDOW = 128
TUNE_DATA = "text:kjv"
EVAL_CORPORA = ("kjv", "jargon", "pydoc")
ROWS = {  # row -> prune pass settings (None: the dense model as loaded)
    "dense": None,
    "dense+lora": {"method": "magnitude", "ratio": 0.0},
    "pat": {"method": "pat", "ratio": 0.25},
    "magnitude": {"method": "magnitude", "ratio": 0.25},
    "taylor": {"method": "taylor", "ratio": 0.25},
    "pat-all-scopes": {"method": "pat", "ratio": 0.25, "scope": "hidden+heads+ffn"},
    "pat-ramp": {"method": "pat", "ratio": 0.25, "ramp": 1.0},
    "pat-zero-init": {"method": "pat", "ratio": 0.25, "mask_init": "zero"},
}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm, tokenizer = load_smollm2()
    windows = {name: metrics.heldout_text_windows(name, tokenizer, WINDOW, args.windows)
               for name in EVAL_CORPORA}
    for row in args.rows.split(","):
        if not (out / row / "quality.json").exists():
            _run_row(row, lm, tokenizer, windows, args, out)
    print(_table([json.loads((out / r / "quality.json").read_text())
                  for r in ROWS if (out / r / "quality.json").exists()], args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--loss", default="distill", choices=("ce", "distill"))
    parser.add_argument("--freeze-at", type=float, default=0.95)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--rows", default=",".join(ROWS))
    return parser


def _run_row(row: str, lm, tokenizer, windows, args, out: Path) -> None:
    settings = ROWS[row]
    start = time.perf_counter()
    stats: dict = {}
    model = lm
    if settings is not None:
        prune = StructuralPruning(**settings, steps=args.steps, batch=args.batch, lr=args.lr,
                                  seq=WINDOW, data=TUNE_DATA, loss=args.loss,
                                  freeze_at=args.freeze_at)
        ctx = PassContext(example_inputs={"input_ids": torch.from_numpy(windows["kjv"][:1])},
                          progress=Progress(verbose=True), data=LocalData(tokenizer),
                          work_dir=out / "work" / row)
        result = prune(CausalLMLogits(lm), ctx)
        model, stats = result.model.lm, result.stats
    seconds = time.perf_counter() - start
    folder = out / row
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ppl = {name: _perplexity(model, w) for name, w in windows.items()}
    record = {"row": row, "settings": settings, "perplexity": ppl, "seconds": round(seconds, 1),
              "params": sum(p.numel() for p in model.parameters()), "stats": stats,
              "steps": args.steps if settings else 0, "batch": args.batch, "lr": args.lr,
              "loss": args.loss, "freeze_at": args.freeze_at}
    (folder / "quality.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"{row}: {ppl} ({seconds:.0f} s)", flush=True)


@torch.no_grad()
def _perplexity(model, windows: np.ndarray) -> float:
    model.eval()

    def logits_of(ids: np.ndarray) -> np.ndarray:
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
    return metrics.perplexity(logits_of, windows)


def _table(records: list[dict], args) -> str:
    dense = next((r for r in records if r["row"] == "dense+lora"), None)
    lines = [f"| row | params | {' | '.join(f'ppl {c}' for c in EVAL_CORPORA)} | "
             "KJV ppl / dense+LoRA | tuning s |", "|---" * (4 + len(EVAL_CORPORA)) + "|"]
    for r in records:
        ppl = r["perplexity"]
        ratio = f"{ppl['kjv'] / dense['perplexity']['kjv']:.3f}" if dense else "-"
        cells = " | ".join(f"{ppl[c]:.2f}" for c in EVAL_CORPORA)
        lines.append(f"| {r['row']} | {r['params'] / 1e6:.1f}M | {cells} | {ratio} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
