"""Using tuning records: time each tuned function against ember's rule schedule, keep the
faster, and put the tuned functions into the module (marked scheduled, so the rules skip them).

Both versions of a function are built alone for the same target, run once on the same random
inputs (their outputs must agree: MetaSchedule measures candidates but never checks them), and
timed alternating between the two, best of `ROUNDS`. A record is used only when it agrees and
wins by MIN_GAIN; a tie within the noise keeps the rules, so a compile is repeatable.
"""

from __future__ import annotations

import os
from typing import Any

from ember.progress import Progress
from ember.runtime.engines.tvm_engine import usable_cores
from ember.targets.tvm.schedules import schedule_rules
from ember.targets.tvm.tune import (
    OperatorGain,
    Task,
    TuningResult,
    database_dir,
    open_database,
    tune,
    tuning_target,
    tuning_tasks,
    workload,
)

ROUNDS = 5
MIN_REPEAT_MS = 20
#: tuned and rule schedules of one function differ only in summation order
AGREE_RTOL, AGREE_ATOL = 1e-4, 1e-5


def compare(tasks: list[Task], database: Any, target: Any, vector_bytes: int
            ) -> tuple[list[OperatorGain], dict[str, Any]]:
    """Per task: rules vs tuned time, and the tuned functions that won (by task name)."""
    gains, winners = [], {}
    for task in tasks:
        tuned = database.query_ir_module(workload(task.func), target, "main")
        rules = _rules_module(task.func, target, vector_bytes)
        modules = [rules] + ([tuned] if tuned is not None else [])
        built = _build_all(modules, target)
        agrees = tuned is None or _outputs_agree(built, modules[0]["main"])
        times = _time_alternating(built, modules[0]["main"])
        gain = OperatorGain(task.name, task.calls, times[0], times[1] if tuned else None, agrees)
        gains.append(gain)
        if gain.used:
            winners[task.name] = tuned["main"]
    return gains, winners


def apply(mod: Any, winners: dict[str, Any]) -> Any:
    """`mod` with the named TIR functions replaced by their tuned versions."""
    for gv in list(mod.functions.keys()):
        if gv.name_hint in winners:
            func = winners[gv.name_hint].with_attr("global_symbol", gv.name_hint)
            mod[gv] = func.with_attr("tirx.is_scheduled", True)
    return mod


def _rules_module(func: Any, target: Any, vector_bytes: int) -> Any:
    from tvm.s_tir import dlight

    with target:
        return dlight.ApplyDefaultSchedule(*schedule_rules(vector_bytes))(workload(func))


def _build_all(modules: list[Any], target: Any) -> list[Any]:
    import tvm

    return [tvm.compile(m, target=target).mod for m in modules]


def _outputs_agree(built: list[Any], func: Any) -> bool:
    """Every buffer after one call of each library on fresh copies of the same inputs is
    equal within AGREE_RTOL/AGREE_ATOL (outputs are written in place into their buffers)."""
    import numpy as np
    import tvm

    results = []
    for lib in built:
        args = _random_args(func, tvm.cpu())
        lib["main"](*args)
        results.append([a.numpy() for a in args])
    return all(np.allclose(a, b, rtol=AGREE_RTOL, atol=AGREE_ATOL, equal_nan=True)
               for a, b in zip(*results, strict=True))


def _time_alternating(built: list[Any], func: Any) -> list[float]:
    """Microseconds per call of each library's `main`, best of ROUNDS alternating runs."""
    import tvm

    device = tvm.cpu()
    args = _random_args(func, device)
    timers = [lib.time_evaluator("main", device, number=1, repeat=1,
                                 min_repeat_ms=MIN_REPEAT_MS) for lib in built]
    best = [float("inf")] * len(built)
    for _ in range(ROUNDS):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], float(timer(*args).mean) * 1e6)
    return best


def _random_args(func: Any, device: Any) -> list[Any]:
    """Inputs in [-1, 1) for float buffers, zeros for integer ones (indices stay in range)."""
    import numpy as np
    import tvm

    rng = np.random.default_rng(0)
    args = []
    for param in func.params:  # TVM 0.27: a parameter is its buffer (shape, dtype)
        shape = [int(d) for d in param.shape]
        dtype = str(param.dtype)
        data = (rng.uniform(-1, 1, shape) if "float" in dtype else np.zeros(shape)).astype(dtype)
        args.append(tvm.runtime.tensor(data, device))
    return args


def use_tuning(mod: Any, target: Any, vector_bytes: int, trials: int | None,
               minutes: float | None, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """Tune if asked (trials or minutes), then use the database's winning records.

    Without a tuning request the database is only read, and only if it exists: a plain
    compile reuses earlier tuning of the same workloads and never starts any.
    """
    # measure as the engine runs: TVM's pool sizes itself once, from TVM_NUM_THREADS or else
    # the physical cores (1 of 2 here), and tuned records chosen on one thread were no
    # faster on two (BENCHMARKS.md)
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))
    target = tuning_target(target)
    folder = database_dir(target)
    asked = trials is not None or minutes is not None
    if not asked and not folder.exists():
        return mod, {"database": None, "trials": 0}
    tasks = tuning_tasks(mod)
    database = open_database(folder)
    result = TuningResult(database=str(folder))
    if asked and tasks:
        result.trials, result.seconds = tune(tasks, target, database, trials, minutes, progress)
    known = [t for t in tasks if database.has_workload(workload(t.func))]
    if known:
        with progress.stage(f"timing {len(known)} tuned operators against the rules"):
            result.operators, winners = compare(known, database, target, vector_bytes)
        mod = apply(mod, winners)
    return mod, result.as_dict()
