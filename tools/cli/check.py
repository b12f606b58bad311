"""`ember check MODEL [--pass NAME[:k=v,...]] ... [--target T] ... [--json]`: what ember would
do with a model (compiler/check.py), before any long work. Without --pass (--target) every
pass (target) is surveyed; exit 0 when every pass and target asked for by name applies (fully
or partly), 2 when one of them declines."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "check"
HELP = "report which passes and targets apply to a model, before compiling it"
DEFAULT_PASSES = ("fold_bn", "sfc", "prune", "spike")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model spec: builtin:NAME, hf:DIR, torch:pkg.mod:fn, onnx:FILE")
    p.add_argument("--pass", dest="passes", action="append", metavar="NAME[:k=v,...]",
                   help=f"a pass to check (repeatable; default: {', '.join(DEFAULT_PASSES)})")
    p.add_argument("--target", dest="targets", action="append", metavar="T",
                   help="a target to check (repeatable; default: every target)")
    p.add_argument("--tokens", type=int, help="example sequence length (language models)")
    p.add_argument("--shape", help="example input shape, e.g. 1,3,32,32 (tensor models)")
    p.add_argument("--inputs", metavar="FILE.npz", help="example inputs of an onnx: model")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from ember.compiler.check import check_model
    from ember.compiler.config import parse_pass_flag, validate_config
    from ember.errors import ConfigError
    from ember.progress import Progress
    from ember.targets import TARGETS
    from ember.tools.cli.compile import parse_shape

    example = {k: v for k, v in (("tokens", args.tokens), ("inputs", args.inputs)) if v}
    if args.shape:
        example["shape"] = parse_shape(args.shape)
    passes = [parse_pass_flag(f) for f in (args.passes or DEFAULT_PASSES)]
    config = validate_config({"model": args.model, "example": example, "passes": passes},
                             source="ember check")
    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)})")
    report = check_model(config.model, config.example, config.passes, targets,
                         Progress(verbose=False if args.quiet else None))
    asked = {f"pass {p.name}" for p in config.passes} if args.passes else set()
    asked |= {f"target {t}" for t in targets} if args.targets else set()
    report["ok"] = all(f["status"] != "declines" for f in report["findings"]
                       if f["what"] in asked)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["ok"] else 2


def render(report: dict[str, Any]) -> str:
    from ember.tools.table import format_table, human_count

    model = report["model"]
    ops = ", ".join(f"{k} {v}" for k, v in model["ops"].items())
    more = model["op_kinds"] - len(model["ops"])
    lines = [f"{model['spec']}: {model['description']}",
             f"  {human_count(model['params'])} parameters; inputs "
             + ", ".join(f"{k} {d}{s}" for k, (d, s) in model["inputs"].items())
             + f"; outputs {', '.join(model['outputs'])}",
             f"  ops: {ops}{f' and {more} more kinds' if more > 0 else ''}", ""]
    rows = [[f["what"], f["status"], f["detail"]] for f in report["findings"]]
    verdict = "everything asked for by name applies" if report["ok"] else \
        "something asked for by name declines (exit 2)"
    return "\n".join(lines) + format_table(["check", "status", "detail"], rows) + \
        f"\n\n{verdict}"
