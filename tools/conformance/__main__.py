"""`python -m ember.tools.conformance`: see the package docstring."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

from ember.tools.conformance.cases import MODEL_SUITES, SUITES, collect
from ember.tools.conformance.driver import run_jobs
from ember.tools.conformance.report import summary, write_report
from ember.tools.conformance.run_case import PLAIN_TVM

TARGETS = ("null", "cpu", "tvm", PLAIN_TVM)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    targets, suites = _words(args.target, TARGETS), _words(args.suite, SUITES)
    if targets is None or suites is None:
        print(f"conformance: --target takes {','.join(TARGETS)}; --suite takes "
              f"{','.join(SUITES)}", file=sys.stderr)
        return 2
    cases = collect(suites, args.match)[: args.limit]
    jobs = [(c.suite, c.name, t) for c in cases for t in targets
            if not (t == PLAIN_TVM and c.suite in MODEL_SUITES)]  # the anchor reads ONNX only
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with (args.out / "results.jsonl").open("w") as stream:
        def record(result: dict[str, Any]) -> None:
            result.pop("lost", None)
            results.append(result)
            stream.write(json.dumps(result) + "\n")
            stream.flush()
            _progress(len(results), len(jobs), result)

        run_jobs(jobs, record, args.timeout)
    write_report(results, _environment(), args.out)
    print(json.dumps(summary(results), indent=1))
    print(f"wrote {args.out / 'report.md'} and report.json ({len(results)} results)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ember.tools.conformance",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu,tvm", help=f"comma-separated: {TARGETS}")
    parser.add_argument("--suite", default=",".join(SUITES),
                        help=f"comma-separated: {SUITES}")
    parser.add_argument("--match", help="only cases whose name matches this regex")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("-o", "--out", type=Path, default=Path("conformance"))
    return parser


def _words(text: str, known: tuple[str, ...]) -> list[str] | None:
    words = [w for w in text.split(",") if w]
    return words if words and all(w in known for w in words) else None


def _progress(done: int, total: int, result: dict[str, Any]) -> None:
    if result["status"] != "pass" or sys.stderr.isatty():
        print(f"[{done}/{total}] {result['target']} {result['case']}: {result['status']} "
              f"{result['detail'][:120]}", file=sys.stderr, flush=True)


def _environment() -> dict[str, Any]:
    import onnx
    import onnxruntime

    from ember import __version__
    from ember.targets.host import cpu_name

    try:
        import tvm

        tvm_version = tvm.__version__
    except ImportError:
        tvm_version = "not installed"
    return {"date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "machine": f"{cpu_name()}, {platform.machine()}", "ember": __version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "tvm": tvm_version}


if __name__ == "__main__":
    sys.exit(main())
