"""`ember demo`: SmolLM2-135M and the digits CNN through cpu and tvm, with a latency table."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

NAME = "demo"
HELP = ("compile builtin:smollm2-135m and builtin:digits-cnn for cpu and tvm, verify them, "
        "and print latency vs uncompiled PyTorch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", type=int, default=32, help="SmolLM2 prefill length (default 32)")
    p.add_argument("--output-dir", help="keep the artifacts here (default: a temporary dir)")
    p.add_argument("--report-dir", default="ember-demo-report",
                   help="where the bench report goes (default ./ember-demo-report)")


def run(args: argparse.Namespace) -> int:
    from ember.compiler.provenance import machine
    from ember.errors import ConfigError
    from ember.progress import Progress
    from ember.tools.demo import render, run_demo

    if args.tokens < 2:
        raise ConfigError("--tokens must be at least 2")
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"--output-dir {out_dir} exists and is not empty")
    progress = Progress(verbose=True)
    rows, report = run_demo(out_dir, Path(args.report_dir), args.tokens, progress)
    host = machine()
    print()
    print(f"ember demo on {host['cpu']}, {host['cores']} cores, Python "
          f"{platform.python_version()}; SmolLM2 prefill of {args.tokens} tokens, batch 1")
    print(render(rows))
    print("\nvs PyTorch = PyTorch eager median / engine median (same inputs, same machine, "
          "same run).\nmax abs err = largest difference from the PyTorch outputs; each artifact "
          "passed its\nverification tolerance (digits-cnn atol 1e-5, SmolLM2 atol 3e-4, see "
          "`ember inspect`).\nThe tvm target uses ember's CPU schedule rules, plus records from "
          "earlier `ember compile --tune` runs\nwhere this machine's tuning database has them "
          "(`ember inspect` lists the tuned operators).")
    quality = "; ".join(f"{r.label} {r.quality.metric} {r.quality.value:.4g}"
                        for r in report.rows if r.quality is not None)
    print(f"\nbench report (each target vs the model's ONNX Runtime artifact, interleaved): "
          f"{args.report_dir}/report.md, report.html, report.json\n{quality}")
    if out_dir:
        print(f"artifacts kept in {out_dir}; try `ember inspect {out_dir}/digits-cnn-tvm`")
    return 0
