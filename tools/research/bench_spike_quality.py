"""Perplexity and operation count of the spike pass on SmolLM2-135M: the quantization ladder.

Every row runs the pass (passes/spike/quantize.py) on a fresh copy of the fp32 model with the same
calibration: `--calib-windows` random windows of 512 tokens from the first half of the KJV
Bible (seed 0). Perplexity is scored in torch (the fake-quantized twin of each SpikeLinear,
equal to the integer path to fp32 rounding; tests/passes/test_spike_units.py) on windows of
512 tokens from the held-out second half of the KJV (in domain) and from the second halves
of the Jargon File and the `pydoc_data` topics (cross domain), up to `--windows` each.
`ops` is the spiking operation count per token relative to the uniform layer (the paper's
"1 + p (T_s - 1)").

    python -m ember.tools.research.bench_spike_quality OUT [--rows w8a8,w4a4,w4a4-salient]
        [--calib-data kjv] [--corpora kjv,jargon,pydoc]

`--calib-data` and `--corpora` pick other installed corpora (the KJV is an optional asset:
`make assets-text`); the "vs fp32" column compares the first corpus of `--corpora`.

Results land in OUT/<row>.json (a rerun skips rows already there) and the table on stdout.
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
from ember.passes.spike.linear import SpikeLinear
from ember.passes.spike.quantize import SpikeQuantization
from ember.progress import Progress
from ember.tools.bench import metrics

WINDOW = 512
CORPORA = ("kjv", "jargon", "pydoc")
W4A4 = {"w_bits": 4, "a_bits": 4}
ROWS: dict[str, dict | None] = {  # row -> spike pass settings (None: fp32 as loaded)
    "fp32": None,
    "w8a8": {"w_bits": 8, "a_bits": 8, "salient_frac": 0.0},
    "w4a8": {"w_bits": 4, "a_bits": 8, "salient_frac": 0.0},
    "w4a4": {**W4A4, "salient_frac": 0.0},
    "w4a4-salient": {**W4A4, "salient_frac": 0.1, "salient_steps": 2},
    "w4a4-random": {**W4A4, "salient_frac": 0.1, "salient_steps": 2, "saliency": "random"},
    "w4a4-separate": {**W4A4, "salient_frac": 0.0, "group_scales": "separate"},
    "w4a4-salient-separate": {**W4A4, "salient_frac": 0.1, "group_scales": "separate"},
    "w4a4-random-separate": {**W4A4, "salient_frac": 0.1, "group_scales": "separate",
                             "saliency": "random"},
    "w4a4-gptq": {**W4A4, "salient_frac": 0.0, "weight_quant": "gptq"},
    "w4a4-gptq-salient": {**W4A4, "salient_frac": 0.1, "weight_quant": "gptq"},
    "ternary-rtn": {"a_bits": 16, "weight_quant": "ternary-rtn", "salient_frac": 0.0},
    "ternary-rtn-salient": {"a_bits": 16, "weight_quant": "ternary-rtn", "salient_frac": 0.1},
    "ternary-gptq": {"a_bits": 16, "weight_quant": "ternary", "salient_frac": 0.0},
    "ternary-gptq-salient": {"a_bits": 16, "weight_quant": "ternary", "salient_frac": 0.1},
    # 4-bit weight-only (float activations): one step per row (plain RTN), per block of 32
    "w4a16-rtn": {"a_bits": 16, "salient_frac": 0.0},
    "w4g32-rtn": {"a_bits": 16, "salient_frac": 0.0, "w_group": 32},
    "w4g32-gptq": {"a_bits": 16, "salient_frac": 0.0, "w_group": 32, "weight_quant": "gptq"},
    "w4g32-gptq-head": {"a_bits": 16, "salient_frac": 0.0, "w_group": 32,
                        "weight_quant": "gptq", "lm_head": True},
    "w4g32-rtn-head": {"a_bits": 16, "salient_frac": 0.0, "w_group": 32, "lm_head": True},
}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    lm, tokenizer = load_smollm2()
    corpora = args.corpora.split(",")
    windows = {name: metrics.heldout_text_windows(name, tokenizer, WINDOW, args.windows)
               for name in corpora}
    for row in args.rows.split(","):
        if row not in ROWS:
            raise SystemExit(f"unknown row {row!r}; rows: {', '.join(ROWS)}")
        if not (out / f"{row}.json").exists():
            _run_row(row, lm, tokenizer, windows, args, out)
    records = [json.loads((out / f"{r}.json").read_text()) for r in ROWS
               if (out / f"{r}.json").exists()]
    print(_table(records, corpora))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--windows", type=int, default=16, help="eval windows per corpus")
    parser.add_argument("--calib-windows", type=int, default=32)
    parser.add_argument("--calib-data", default="kjv", help="calibration corpus")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="scored corpora")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def _run_row(row: str, lm, tokenizer, windows, args, out: Path) -> None:
    settings = ROWS[row]
    start = time.perf_counter()
    model, stats = CausalLMLogits(lm), {}
    if settings is not None:
        spike = SpikeQuantization(**settings, data=f"text:{args.calib_data}",
                                  calib_windows=args.calib_windows, calib_seq=WINDOW)
        result = spike(CausalLMLogits(lm), PassContext(progress=Progress(verbose=True),
                                                       data=LocalData(tokenizer)))
        model, stats = result.model, result.stats  # the pass leaves `lm` as it was
        for module in model.modules():
            if isinstance(module, SpikeLinear):
                module.exact = False  # fake-quantized twin: same function, fp32 speed
    seconds = time.perf_counter() - start
    ppl = {name: _perplexity(model, w) for name, w in windows.items()}
    ace = stats.get("ace") or {}
    record = {"row": row, "settings": settings, "perplexity": ppl,
              "calibration_s": round(seconds, 1),
              "ops_ratio": ace.get("ratio_to_uniform", 1.0),
              "activation_bits": ace.get("activation_bits", 32.0),
              "weight_bits": ace.get("weight_bits", 32.0),
              "energy_ratio": (ace["energy_uj_per_token"] / ace["fp32_energy_uj_per_token"]
                               if ace else 1.0),
              "calibration_tokens": stats.get("calibration_tokens", 0)}
    (out / f"{row}.json").write_text(json.dumps(record, indent=1))
    print(f"{row}: {ppl} ({seconds:.0f} s)", flush=True)


@torch.no_grad()
def _perplexity(model, windows: np.ndarray) -> float:
    model.eval()
    return metrics.perplexity(lambda ids: model(torch.from_numpy(ids)).numpy(), windows)


def _table(records: list[dict], corpora: list[str]) -> str:
    base = {r["row"]: r for r in records}
    first = corpora[0]
    lines = [f"| row | {' | '.join(f'ppl {c}' for c in corpora)} | {first} vs fp32 | ops vs "
             "uniform | act bits | weight bits | energy vs fp32 (est.) |",
             "|---" * (7 + len(corpora) - 1) + "|"]
    fp32 = base.get("fp32")
    for r in records:
        ppl = r["perplexity"]
        if any(c not in ppl for c in corpora):
            continue  # a row scored on other corpora (an earlier run into the same OUT)
        rel = f"{ppl[first] / fp32['perplexity'][first] - 1:+.1%}" if fp32 else "-"
        cells = " | ".join(f"{ppl[c]:.2f}" for c in corpora)
        lines.append(f"| {r['row']} | {cells} | {rel} | {r['ops_ratio']:.3f} | "
                     f"{r['activation_bits']:.2f} | {r['weight_bits']:.2f} | "
                     f"{r['energy_ratio']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
