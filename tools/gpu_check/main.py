"""One-shot device check of ember's GPU kernels: correctness, then timings against cuBLAS and
cuDNN, written after every section so a cut-off run still leaves its results.

    python tools/gpu_check/main.py OUT_DIR [--quick] [--budget-s 230] [--only int4,int8,sfc]
                              [--artifacts CANDIDATE[:BASELINE] ...]

Run from the repository root on a CUDA machine with torch and Triton; ember need not be
installed (the script makes the repository importable as `ember` itself). Writes
OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md; without CUDA it prints one line and exits 2.
Each check catches and records its own exception; sections that would start after the time
budget are recorded as skipped. Exit code: 0 when every check that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import importlib.util
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# packages whose __init__ imports what the kernels do not need (pydantic, tqdm, ...)
BARE_PACKAGES = {"ember.runtime": "runtime", "ember.passes": "passes"}
SECTIONS = (  # (name, module under ember.tools.gpu_check, function); the gpu target's programs
    # come before the kernels' own timings, which earlier runs measured already
    ("correctness_int4", "int4", "correctness"),
    ("correctness_int8", "int8", "correctness"),
    ("correctness_sfc", "sfc", "correctness"),
    ("correctness_program", "programs", "correctness"),
    ("timing_program", "programs", "timing"),
    ("timing_int4", "int4", "timing"),
    ("timing_int8", "int8", "timing"),
    ("timing_sfc", "sfc", "timing"),
)


def ensure_ember() -> Path:
    """Make `import ember` load this repository (whose root is the package) and return the
    package folder. Without an install of this tree, a temporary folder holding a symlink
    `ember -> REPO` goes first on sys.path."""
    script_dir = str(REPO / "tools" / "gpu_check")
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != script_dir]
    spec = importlib.util.find_spec("ember")
    if spec is None or spec.origin is None or Path(spec.origin).resolve().parent != REPO:
        shim = Path(tempfile.mkdtemp(prefix="ember-import-"))
        atexit.register(shutil.rmtree, shim, ignore_errors=True)
        (shim / "ember").symlink_to(REPO, target_is_directory=True)
        sys.path.insert(0, str(shim))
        for name in [m for m in sys.modules if m == "ember" or m.startswith("ember.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
    import ember

    for name, folder in BARE_PACKAGES.items():
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(Path(ember.__file__).parent / folder)]
            sys.modules[name] = package
            setattr(ember, name.rsplit(".", 1)[1], package)
    return Path(ember.__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    parser.add_argument("--budget-s", type=float, default=230.0,
                        help="start no section after this many seconds (default 230)")
    parser.add_argument("--artifacts", nargs="+", default=[], metavar="DIR[:BASELINE]",
                        help="compiled gpu artifacts to check (as `ember run --check`) and, "
                        "for CANDIDATE:BASELINE pairs, to time against each other; these "
                        "sections run first")
    parser.add_argument("--only", default="", help="comma-separated words; run only the "
                        "sections whose name contains one (e.g. int4,sfc)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch; nothing to check", file=sys.stderr)
        return 2
    started = time.monotonic()
    package = ensure_ember()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"env": environment(package, args.quick), "sections": {}}
    print(_env_line(report["env"]), flush=True)
    wanted = [word for word in args.only.split(",") if word]
    sections = [(name, module, function, ()) for name, module, function in SECTIONS]
    if args.artifacts:
        sections[:0] = [(f"{kind}_artifacts", "artifacts", kind, (args.artifacts,))
                        for kind in ("correctness", "timing")]
    for name, module, function, extra in sections:
        if wanted and not any(word in name for word in wanted):
            continue
        elapsed = time.monotonic() - started
        if elapsed > args.budget_s:
            report["sections"][name] = {"status": "skipped", "reason": f"budget ({elapsed:.0f} s)"}
        else:
            report["sections"][name] = run_section(module, function, args.quick, *extra)
            print(_section_line(name, report["sections"][name], started), flush=True)
        report["tuning"] = _tuning()
        report["elapsed_s"] = time.monotonic() - started
        write(report, args.out_dir)
    print(f"wrote {args.out_dir / 'gpu_check.json'} and gpu_check.md "
          f"in {report['elapsed_s']:.0f} s", flush=True)
    return 0 if all_passed(report) else 1


def environment(package: Path, quick: bool) -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    env = {"device": torch.cuda.get_device_name(0), "capability": f"{props.major}.{props.minor}",
           "sms": props.multi_processor_count, "memory_gib": props.total_memory / 2**30,
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "ember_package": str(package), "quick": quick}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError as error:
        env["triton"] = f"unavailable: {error}"
    return env


def run_section(module: str, function: str, quick: bool, *extra: Any) -> dict[str, Any]:
    """Run one section; an exception is recorded with its traceback, never raised."""
    start = time.monotonic()
    try:
        mod = importlib.import_module(f"ember.tools.gpu_check.{module}")
        rows = getattr(mod, function)(quick, *extra)
        return {"status": "ok", "seconds": time.monotonic() - start, "rows": rows}
    except Exception as error:  # recorded: one failing kernel must not hide the others
        return {"status": "error", "seconds": time.monotonic() - start,
                "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def all_passed(report: dict[str, Any]) -> bool:
    sections = report["sections"].values()
    return all(s["status"] != "error" for s in sections) and all(
        row.get("ok", True) for s in sections for row in s.get("rows", []))


def write(report: dict[str, Any], out_dir: Path) -> None:
    """gpu_check.json and gpu_check.md, each replaced whole."""
    for name, text in (("gpu_check.json", json.dumps(report, indent=2, default=str)),
                       ("gpu_check.md", render_markdown(report))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)


def render_markdown(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [f"# ember GPU kernel check — {env['device']}", "",
             f"{env['date']}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
             f"Triton {env.get('triton')}; {env['sms']} SMs"
             f"{'; --quick' if env['quick'] else ''}. Ratio = baseline time / candidate time "
             "(> 1: the candidate is faster); medians of CUDA-graph replays.", ""]
    for name, section in report["sections"].items():
        lines += [f"## {name} ({section['status']}, {section.get('seconds', 0):.1f} s)", ""]
        if section["status"] == "error":
            lines += ["```", section["traceback"].rstrip(), "```", ""]
        elif section["status"] == "skipped":
            lines += [section["reason"], ""]
        elif name.startswith("correctness"):
            lines += _correctness_table(section["rows"])
        else:
            lines += _timing_table(section["rows"])
    return "\n".join(lines) + "\n"


def _correctness_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| kernel | case | metric | value | tol | ok |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "yes" if r["ok"] else f"**NO** {r.get('error', '')}".rstrip()
        out.append(f"| {r['kernel']} | {r['case']} | {r['metric']} | {r['value']:.3g} | "
                   f"{r['tol']:.3g} | {verdict} |")
    return [*out, ""]


def _timing_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| case | baseline | ms | candidate | ms | ratio | notes |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['case']} | | | {r['candidate']} | | | **ERROR** {r['error']} |")
            continue
        notes = ", ".join(f"{k}={_fmt(v)}" for k, v in r.items()
                          if k.endswith(("gbps", "tflops", "stages_ms", "ideal")))
        out.append(f"| {r['case']} | {r['baseline']} | {r['baseline_ms']:.4f} | "
                   f"{r['candidate']} | {r['candidate_ms']:.4f} | {r['ratio']:.2f}x | {notes} |")
    return [*out, ""]


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v:.4f}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _tuning() -> dict[str, Any]:
    module = sys.modules.get("ember.runtime.gpu.tuning")
    return module.chosen() if module is not None else {}


def _env_line(env: dict[str, Any]) -> str:
    return (f"gpu_check: {env['device']} (sm {env['capability']}), torch {env['torch']}, "
            f"CUDA {env['cuda']}, Triton {env.get('triton')}; ember from {env['ember_package']}")


def _section_line(name: str, section: dict[str, Any], started: float) -> str:
    status = section["status"]
    if status == "ok" and name.startswith("correctness"):
        failed = [r for r in section["rows"] if not r["ok"]]
        status = f"{len(section['rows']) - len(failed)}/{len(section['rows'])} passed" + "".join(
            f"\n    FAILED {r['kernel']} {r['case']} {r['metric']}={r['value']:.3g} "
            f"{r.get('error', '')}" for r in failed)
    elif status == "ok":
        status = "".join(f"\n    {_timing_line(r)}" for r in section["rows"])
    elif status == "error":
        status = f"ERROR {section['error']}"
    return f"[{time.monotonic() - started:6.1f} s] {name}: {status}"


def _timing_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['case']}: {row['candidate']} ERROR {row['error']}"
    return (f"{row['case']}: {row['candidate']} {row['candidate_ms']:.4f} ms, "
            f"{row['ratio']:.2f}x vs {row['baseline']} {row['baseline_ms']:.4f} ms")


if __name__ == "__main__":
    sys.exit(main())
