"""The fpga target's numbers: the digits CNN (direct, SFC) and a SmolLM2-sized decoder block
(spiking, ternary), compiled, simulated and estimated on the three device profiles.

    python -m ember.tools.research.bench_fpga OUT [--parts digits,block] [--block-tokens 32]

digits: fold_bn (+ sfc) compiled for `fpga` (ZU9EG); top-1 on the 1000 held-out digits of
the float model after passes and of the C simulation; the C simulation against the numpy
golden model on all 1000 (the golden network re-lowered here from the same calibration, so
the comparison is with an independent run of the reference); per-layer SFC multiplier and
DSP ratios at equal throughput; resource estimates on each device profile.

block: SmolLM2-135M's first decoder layer with its real weights (hidden 576, 9 heads / 3 KV
heads, FFN 1536), its final norm, and the first 2048 rows of its embedding / tied LM head
(the full 49152-row table would be a 28 MB array in weights.h), saved as an hf: folder and
compiled with the spike pass for `fpga` on the U250 profile.

Results: OUT/fpga.json and the markdown tables on stdout. Estimates are the analytical
resource model's (targets/fpga/resources/estimate.py), not synthesis results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ember
import ember.runtime as rt
from ember.compiler.config import parse_pass_flag
from ember.targets.fpga.devices import DEVICES, device

BLOCK_VOCAB = 2048
BLOCK_ROWS = {
    "w4a4-salient": "spike:w_bits=4,a_bits=4,salient_frac=0.1,salient_steps=2,data=random",
    "w8a8": "spike:w_bits=8,a_bits=8,data=random",
    "ternary": "spike:weight_quant=ternary,w_bits=2,a_bits=8,data=random",
}


def digits(out: Path) -> dict[str, Any]:
    from ember.compiler.models.digits import _cached_or_trained
    from ember.progress import QUIET

    _, _, train, test = _cached_or_trained(QUIET)
    rows = {}
    for name, passes in (("direct", ["fold_bn"]), ("sfc6_6x6", ["fold_bn", "sfc"]),
                         ("sfc-auto", ["fold_bn", "sfc:algorithm=auto"])):
        folder = out / f"digits-{name}"
        started = time.perf_counter()
        ember.compile({"model": "builtin:digits-cnn", "target": "fpga", "output": str(folder),
                       "passes": [parse_pass_flag(p) for p in passes]}, force=True)
        rows[name] = _digits_row(folder, train, test, time.perf_counter() - started)
    return rows


def _digits_row(folder: Path, train, test, compile_s: float) -> dict[str, Any]:
    session = rt.load(folder)
    # the artifact's signature is one image; its engine takes any batch in one simulation run
    simulated = session.engine.run([test.images])[0]
    net, model = _relowered(folder, train)
    golden = net.golden(test.images)
    with torch.no_grad():
        float_logits = model(torch.from_numpy(test.images)).numpy()
    timing = session.benchmark({"image": test.images[:1]}, warmup=3, repeat=20)
    resources = json.loads((folder / "fpga" / "resources.json").read_text())
    return {
        "compile_s": round(compile_s, 1),
        "csim_equals_golden": bool(np.array_equal(simulated, golden)),
        "images": len(test.labels),
        "top1_float": float((float_logits.argmax(1) == test.labels).mean()),
        "top1_fpga": float((simulated.argmax(1) == test.labels).mean()),
        "agreement": float((simulated.argmax(1) == float_logits.argmax(1)).mean()),
        "csim_ms_per_image": timing.median_ms,
        "estimate": _estimate(resources),
        "sfc_layers": [dict(name=layer["name"], **layer["sfc"]) for layer in resources["layers"]
                       if layer["sfc"]],
        "devices": _devices(net),
    }


def _relowered(folder: Path, train) -> tuple[Any, Any]:
    """The golden network rebuilt from the artifact's recorded config and calibration."""
    from ember.compiler.api import prepare, resolve_config
    from ember.targets.fpga.lower.graph import lower
    from ember.targets.module_reader import read_graph

    manifest = json.loads((folder / "manifest.json").read_text())
    prepared = prepare(resolve_config(manifest["config"]))
    images = train.images[:manifest["target_info"]["calibration"]["images"]]
    nodes, output, _ = read_graph(prepared.model, "image", images[:1])
    return lower(nodes, output, images), prepared.model


def _devices(net: Any) -> dict[str, Any]:
    from ember.targets.fpga.resources.estimate import plan

    return {key: _estimate(plan(net, device(key))) for key in DEVICES}


def _estimate(resources: dict[str, Any]) -> dict[str, Any]:
    totals = resources["totals"]
    product_dsp = sum(layer["product_dsp"] for layer in resources["layers"])
    return {"dsp": totals["dsp"], "product_dsp": product_dsp, "lut": totals["lut"],
            "ff": totals["ff"], "bram36": totals["bram36"], "uram": totals["uram"],
            "latency_us": resources["latency_us"], "interval_cycles": resources["interval_cycles"],
            "clock_mhz": resources["clock_mhz"], "fits": resources["fits"]}


def block(out: Path, tokens: int) -> dict[str, Any]:
    folder = out / "smollm2-block-hf"
    _save_block(folder)
    rows = {}
    for name, spec in BLOCK_ROWS.items():
        target = out / f"block-{name}"
        started = time.perf_counter()
        ember.compile({"model": f"hf:{folder}", "example": {"tokens": tokens},
                       "passes": [parse_pass_flag(spec)], "target": "fpga",
                       "target_options": {"device": "u250"}, "output": str(target)}, force=True)
        rows[name] = _block_row(target, time.perf_counter() - started)
    return rows


def _save_block(folder: Path) -> None:
    from transformers import LlamaForCausalLM

    from ember.compiler.models.smollm2 import load_smollm2

    lm, _ = load_smollm2()
    config = lm.config.to_dict()
    config.update(num_hidden_layers=1, vocab_size=BLOCK_VOCAB)
    small = LlamaForCausalLM(type(lm.config).from_dict(config)).eval()
    state = {k: v for k, v in lm.state_dict().items() if not k.startswith("model.layers.")
             or k.startswith("model.layers.0.")}
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in state:
            state[key] = state[key][:BLOCK_VOCAB]
    small.load_state_dict(state, strict=False)
    small.tie_weights()
    small.save_pretrained(folder)


def _block_row(folder: Path, compile_s: float) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    session = rt.load(folder)
    inputs, _ = session.reference_io()
    timing = session.benchmark(inputs, warmup=1, repeat=5)
    resources = json.loads((folder / "fpga" / "resources.json").read_text())
    spiking = [layer for layer in resources["layers"] if layer["op"] == "SpikeLinear"]
    verification = manifest["verification"]
    return {
        "compile_s": round(compile_s, 1),
        "verification": verification["status"],
        "max_abs_vs_golden": verification["outputs"]["logits"]["max_abs"],
        "float_model": verification["float_model"]["logits"],
        "csim_ms": timing.median_ms,
        "estimate": _estimate(resources),
        "spiking_layers": len(spiking),
        "spiking_product_dsp": sum(layer["product_dsp"] for layer in spiking),
        "spiking_additions": sum(layer["additions"] for layer in spiking),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if "digits" in results:
        lines += ["| digits CNN | top-1 float | top-1 C-sim | C-sim = golden (1000) | "
                  "est. latency us | DSP | LUT | BRAM36 | C-sim ms/image |", "|---" * 9 + "|"]
        for name, r in results["digits"].items():
            e = r["estimate"]
            lines.append(f"| {name} | {r['top1_float']:.3f} | {r['top1_fpga']:.3f} | "
                         f"{r['csim_equals_golden']} | {e['latency_us']:.1f} | {e['dsp']} | "
                         f"{e['lut']} | {e['bram36']} | {r['csim_ms_per_image']:.2f} |")
        lines += ["", "| SFC layer | algorithm | products direct / SFC | ratio | DSP direct / "
                  "SFC (same cycles) | DSP ratio | transform adds | transform LUT |",
                  "|---" * 8 + "|"]
        for name in ("sfc6_6x6", "sfc-auto"):
            for s in results["digits"].get(name, {}).get("sfc_layers", []):
                lines.append(f"| {name}: {s['name']} | {s['algorithm']} | "
                             f"{s['direct_products']} / {s['products']} | "
                             f"{s['product_ratio']:.2f}x | {s['direct_product_dsp']} / "
                             f"{s['product_dsp']} | {s['dsp_ratio']:.2f}x | "
                             f"{s['transform_additions']} | {s['transform_lut']} |")
        lines += ["", "| digits CNN | device | DSP | LUT | BRAM36 | est. latency us | "
                  "interval cycles | fits |", "|---" * 8 + "|"]
        for name, r in results["digits"].items():
            for key, e in r["devices"].items():
                lines.append(f"| {name} | {key} @ {e['clock_mhz']:g} MHz | {e['dsp']} | "
                             f"{e['lut']} | {e['bram36']} | {e['latency_us']:.1f} | "
                             f"{e['interval_cycles']} | {e['fits']} |")
    if "block" in results:
        lines += ["", "| SmolLM2-sized block (U250) | verified | max error / range vs float | "
                  "top-1 agreement | DSP (products of spiking layers) | LUT | BRAM36 | URAM | "
                  "est. latency us | C-sim ms | compile s |", "|---" * 11 + "|"]
        for name, r in results["block"].items():
            e, f = r["estimate"], r["float_model"]
            lines.append(f"| {name} | {r['verification']} (exact) | "
                         f"{f['max_error_of_range']:.3f} | {f.get('top1_agreement', 0):.3f} | "
                         f"{e['dsp']} ({r['spiking_product_dsp']}) | {e['lut']} | "
                         f"{e['bram36']} | {e['uram']} | {e['latency_us']:.1f} | "
                         f"{r['csim_ms']:.0f} | {r['compile_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--parts", default="digits,block")
    parser.add_argument("--block-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    parts = args.parts.split(",")
    saved = args.out / "fpga.json"
    if saved.exists():  # a rerun of one part keeps the other's results
        results = json.loads(saved.read_text())
    if "digits" in parts:
        results["digits"] = digits(args.out)
        saved.write_text(json.dumps(results, indent=1))
    if "block" in parts:
        results["block"] = block(args.out, args.block_tokens)
        saved.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
