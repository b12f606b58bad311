"""Opt-in MetaSchedule tuning for the `tvm` target, with a database reused across compiles.

The hot TIR functions of a legalized Relax module (convolutions and matrix products: the
functions that together hold >= 99% of the estimated FLOPs, at most `MAX_TASKS`) become
MetaSchedule tasks. Tuning is bounded by a trial count and/or minutes; its records go to a
JSON database under the user cache directory, one folder per target (its dict and the TVM
version hashed), where records are keyed by the workload's structural hash. Any later
compile whose functions match a stored workload reuses the record without tuning.

A tuned schedule is used only where it measures faster than ember's rule schedule for the
same function (both built here, timed here, `compare`), so tuning never makes a build
slower, and the per-operator gains land in the manifest.

MetaSchedule's LocalBuilder starts fresh worker processes for every batch, and each one
spends ~25 s importing `tvm.s_tir.tensor_intrin` (it parses ~500 TVMScript functions) before
its first build, past its 30 s timeout on two cores; candidates are therefore built in this
process (`_InProcessBuilder`), where that import is paid once, and made cheap there
(`_load_tensor_intrinsics`): nearly all of it was `inspect.stack()` searching every loaded
module for the import machinery's frozen frames, once per parsed function.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.cache import cache_dir
from ember.progress import Progress
from ember.runtime.engines.tvm_engine import usable_cores

MAX_TASKS = 16
FLOP_SHARE = 0.99  # tune the functions that hold this share of the estimated FLOPs
#: a tuned record replaces the rules only when it is this much faster: nearer than that the
#: timing noise decides, and the same compile would pick differently from run to run
MIN_GAIN = 1.03
TRIALS_PER_ROUND = 16


@dataclass
class Task:
    name: str  # the TIR function's name in the Relax module
    func: Any  # tvm.tirx.PrimFunc
    calls: int  # how often `main` calls it
    flops: float  # per call


@dataclass
class OperatorGain:
    name: str
    calls: int
    rules_us: float
    tuned_us: float | None  # None: no record in the database
    agrees: bool = True  # the tuned function's outputs equal the rules' on the same inputs

    @property
    def used(self) -> bool:
        return self.tuned_us is not None and self.agrees \
            and self.tuned_us * MIN_GAIN < self.rules_us

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "calls": self.calls, "rules_us": round(self.rules_us, 2),
                "tuned_us": None if self.tuned_us is None else round(self.tuned_us, 2),
                "agrees": self.agrees, "used": self.used}


@dataclass
class TuningResult:
    database: str
    trials: int = 0  # measured in this compile
    seconds: float = 0.0
    operators: list[OperatorGain] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        used = [op for op in self.operators if op.used]
        return {"database": self.database, "trials": self.trials,
                "seconds": round(self.seconds, 1), "operators_tuned": len(used),
                "operators": [op.as_dict() for op in self.operators]}


def database_dir(target: Any) -> Path:
    """The database folder for `target`: <root>/<hash of target dict + TVM version>, where
    root is $EMBER_TUNING_DIR, else the cache directory's tvm-tuning/."""
    import tvm

    key = json.dumps({"target": str(target), "tvm": tvm.__version__}, sort_keys=True)
    return database_root() / hashlib.sha256(key.encode()).hexdigest()[:16]


def database_root() -> Path:
    root = os.environ.get("EMBER_TUNING_DIR")
    return Path(root) if root else cache_dir() / "tvm-tuning"


def open_database(folder: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    folder.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")


def tuning_tasks(mod: Any) -> list[Task]:
    """The hot TIR functions of a legalized module, heaviest first."""
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    calls = _call_counts(mod)
    tasks = []
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc) and calls.get(gv.name_hint) \
                and not _scheduled(func):
            flops = float(estimate_tir_flops(workload(func)))
            tasks.append(Task(gv.name_hint, func, calls[gv.name_hint], flops))
    tasks.sort(key=lambda t: t.flops * t.calls, reverse=True)
    total, chosen, covered = sum(t.flops * t.calls for t in tasks), [], 0.0
    for task in tasks[:MAX_TASKS]:
        if covered >= FLOP_SHARE * total:
            break
        chosen.append(task)
        covered += task.flops * task.calls
    return chosen


def _scheduled(func: Any) -> bool:
    """Scheduled by ember already (the VNNI kernel): nothing to tune."""
    return func.attrs is not None and bool(func.attrs.get("tirx.is_scheduled", False))


def workload(func: Any) -> Any:
    """The IRModule a task tunes (and the database keys): the function alone, as `main`."""
    import tvm

    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def _call_counts(mod: Any) -> dict[str, int]:
    """How many `call_tir`s of each TIR function the Relax functions make."""
    from tvm import relax

    counts: dict[str, int] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and len(expr.args) > 0 \
                and isinstance(expr.args[0], relax.GlobalVar):
            name = expr.args[0].name_hint
            counts[name] = counts.get(name, 0) + 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts


def tune(tasks: list[Task], target: Any, database: Any, trials: int | None,
         minutes: float | None, progress: Progress) -> tuple[int, float]:
    """Run MetaSchedule on `tasks` for `target` (a `tuning_target`) until `trials` are
    measured or `minutes` pass.

    Returns (trials measured, seconds). Records are committed to `database` as they come.
    """
    from tvm.s_tir import meta_schedule as ms

    _load_tensor_intrinsics()  # what TuneContext imports first, made cheap
    budget = trials if trials is not None else 100_000  # a time budget alone: trials unbounded
    deadline = time.monotonic() + minutes * 60 if minutes is not None else None
    contexts = [ms.TuneContext(mod=workload(t.func), target=target, task_name=t.name,
                               space_generator="post-order-apply",
                               search_strategy="evolutionary", num_threads=usable_cores())
                for t in tasks]
    start = time.monotonic()
    with progress.bar(trials, "tuning trials") as bar, tempfile.TemporaryDirectory() as logs:
        counter = _counter(bar, deadline)
        try:
            ms.tune_tasks(
                tasks=contexts, task_weights=[float(t.calls) for t in tasks],
                work_dir=logs, max_trials_global=budget,
                num_trials_per_iter=TRIALS_PER_ROUND, builder=_in_process_builder(),
                runner=ms.runner.LocalRunner(timeout_sec=60), database=database,
                cost_model="xgb",
                measure_callbacks=[*ms.MeasureCallback.create("default"), counter])
        except Exception as exc:  # the callback's stop signal comes back through TVM's FFI
            if BUDGET_SPENT not in str(exc):
                raise
    return counter.measured, time.monotonic() - start


def tuning_target(target: Any) -> Any:
    """MetaSchedule sizes its parallel loops by the target's `num-cores`, which it requires."""
    import tvm

    config = dict(target.export())
    config["num-cores"] = usable_cores()
    return tvm.target.Target(config)


BUDGET_SPENT = "ember: tuning time budget spent"


def _load_tensor_intrinsics() -> None:
    """Import `tvm.s_tir.tensor_intrin` with the import machinery's frames known to `inspect`.

    TVMScript's `@T.prim_func` calls `inspect.stack()` for each of the ~500 functions that
    module parses, and for every frame of `importlib._bootstrap` (whose file name,
    `<frozen importlib._bootstrap>`, names no file) `inspect.getmodule` scans all of
    `sys.modules` in vain, several times over: ~30 s with torch loaded, growing with the
    modules loaded (and the same for `<frozen runpy>` under `python -m`). Telling `inspect`
    which module those frames belong to makes each lookup a dict hit; the frames
    TVMScript reads are the intrinsic modules' own, which are real files, so it parses the
    same functions. The entries are removed again afterwards.
    """
    with _frozen_frames_known():
        import tvm.s_tir.tensor_intrin  # noqa: F401


@contextmanager
def _frozen_frames_known() -> Iterator[None]:
    """Map each frozen module's frame file name (`<frozen runpy>`) to the module in
    `inspect`'s file-to-module cache while the block runs (an undocumented dict: where a
    Python lacks it, nothing changes)."""
    cache = getattr(inspect, "modulesbyfile", None)
    added = []
    for module in list(sys.modules.values()) if isinstance(cache, dict) else []:
        if getattr(getattr(module, "__spec__", None), "origin", None) != "frozen":
            continue
        filename = f"<frozen {module.__name__}>"  # its code objects' co_filename
        if filename not in cache:
            cache[filename] = module.__name__
            added.append(filename)
    try:
        yield
    finally:
        for filename in added:
            cache.pop(filename, None)


def _counter(bar: Any, deadline: float | None) -> Any:
    """A measure callback that advances `bar` and, once `deadline` has passed, stops the
    tuning by raising: the database callbacks before it have stored the round's records.
    (Terminating the scheduler's tasks from here instead trips its consistency checks.)"""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Counter(ms.measure_callback.PyMeasureCallback):
        def __init__(self) -> None:
            self.measured = 0

        def apply(self, task_scheduler, task_id, candidates, builds, runs) -> None:
            self.measured += len(runs)
            bar.update(len(runs))
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(BUDGET_SPENT)

    return _Counter()


def _in_process_builder() -> Any:
    """Builds candidates here, one after another (see the module docstring for why)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class _InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                try:
                    path = default_export(default_build(item.mod, item.target, None))
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as exc:  # a candidate TVM cannot lower: MetaSchedule skips it
                    results.append(ms.builder.BuilderResult(None, str(exc)[:2000]))
            return results

    return _InProcessBuilder()
