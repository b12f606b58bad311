"""`ember bench DIR... [--baseline DIR] [--data SPEC] [--repeat N] -o REPORT_DIR`, and
`ember bench --sweep SWEEP.yaml -o DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "bench"
HELP = "time artifacts against their baselines on real data; write report.json/.md/.html"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifacts", nargs="*", help="artifact directories to benchmark")
    p.add_argument("--sweep", metavar="SWEEP.yaml", help="compile and measure a grid instead")
    p.add_argument("--baseline", action="append", default=[], metavar="DIR",
                   help="baseline artifact (repeatable; matched by model and input signature); "
                        "default: the same model compiled with no passes, built on the fly")
    p.add_argument("--data", help="text:CORPUS (perplexity) | digits (top-1) | agreement")
    p.add_argument("--repeat", type=int, help="interleaved pairs (default: fit --budget)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up pairs (default 3)")
    p.add_argument("--budget", type=float, default=4.0,
                   help="seconds of timing per artifact when --repeat is not given (default 4)")
    p.add_argument("--threads", type=int, help="engine threads (default: as compiled)")
    p.add_argument("--max-quality-drop", type=float,
                   help="flag rows whose quality drop exceeds this (absolute for top-1 and "
                        "agreement, relative for perplexity)")
    p.add_argument("--fail-under-speedup", type=float, metavar="X",
                   help="exit with code 1 when any row's speedup is below X")
    p.add_argument("-o", "--output", required=True, help="report directory")


def run(args: argparse.Namespace) -> int:
    from ember.compiler.artifact import file_in_the_way
    from ember.errors import ConfigError
    from ember.progress import Progress
    from ember.tools.bench.evaluate import BenchOptions

    if bool(args.sweep) == bool(args.artifacts):
        raise ConfigError("give artifact directories or --sweep SWEEP.yaml (one of the two)")
    if args.repeat is not None and args.repeat < 1 or args.warmup < 0 or args.budget <= 0:
        raise ConfigError("--repeat must be >= 1, --warmup >= 0 and --budget > 0")
    options = BenchOptions(warmup=args.warmup, repeat=args.repeat, budget_s=args.budget,
                           threads=args.threads, data=args.data,
                           max_quality_drop=args.max_quality_drop)
    progress = Progress()
    out = Path(args.output)
    blocked = out if out.exists() and not out.is_dir() else file_in_the_way(out)
    if blocked is not None:
        raise ConfigError(f"-o {out}: {blocked} is a file; the report needs a directory")
    if args.sweep:
        from ember.tools.bench.sweep import run_sweep

        report = run_sweep(Path(args.sweep), out, options, args.fail_under_speedup, progress)
    else:
        from ember.tools.bench.runner import run_bench

        report = run_bench([Path(a) for a in args.artifacts], out, options,
                           [Path(b) for b in args.baseline], args.fail_under_speedup, progress)
    from ember.tools.bench.report_md import render_markdown

    print(render_markdown(report))
    print(f"\nwrote {out}/report.json, report.md, report.html")
    return _exit_code(report, args.fail_under_speedup)


def _exit_code(report, fail_under: float | None) -> int:
    if fail_under is None:
        return 0
    slow = [r for r in report.rows if r.speedup < fail_under]
    for row in slow:
        print(f"ember: bench: {row.label} speedup {row.speedup:.3f}x is under "
              f"--fail-under-speedup {fail_under:g}", file=sys.stderr)
    return 1 if slow else 0
