"""How artifacts hold up when the CPU is not theirs alone: each one timed idle, with cores
kept busy by another process, and alternated call by call in one process with another
artifact's session (another engine's, as a service that runs two models does).

    python -m ember.tools.research.bench_load ARTIFACT [ARTIFACT ...] [--busy 1]
        [--seconds 3] [--rounds 3] [--threads 0]

Each condition times the artifact's own reference inputs (reference_io.npz) call by call
for `--seconds`, after a warm-up; "busy" starts `--busy` processes that spin in a Python
loop for the whole measurement; "alternated" runs the next artifact in the list (the first
after the last) between every two timed calls and times only this artifact's calls. The
conditions are interleaved, `--rounds` times in a reversed order each round, and the table
gives median milliseconds per call (the median over rounds of each round's median) and each
condition's slowdown against idle. The table goes to stdout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

CONDITIONS = ("idle", "busy", "alternated")
SPIN = "while True: pass"


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if len(args.artifacts) < 2:
        raise SystemExit("bench_load needs at least two artifacts (each alternates with the "
                         "next)")
    calls = [_call(Path(a), args.threads) for a in args.artifacts]
    times: dict[tuple[int, str], list[float]] = {}
    for round_index in range(args.rounds):
        order = [(i, c) for i in range(len(calls)) for c in CONDITIONS]
        for i, condition in order if round_index % 2 == 0 else reversed(order):
            other = calls[(i + 1) % len(calls)]
            ms = _measure(calls[i], other, condition, args)
            times.setdefault((i, condition), []).append(ms)
    print(_table(args.artifacts, times, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes for 'busy'")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per condition")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: compiled)")
    return parser


def _call(artifact: Path, threads: int) -> Callable[[], None]:
    import ember.runtime as rt

    session = rt.load(artifact, **({"threads": threads} if threads else {}))
    stored = np.load(artifact / "reference_io.npz")
    inputs = {k.split(":", 1)[1]: stored[k] for k in stored.files if k.startswith("input:")}
    return lambda: session.run(inputs)


def _measure(call: Callable[[], None], other: Callable[[], None], condition: str,
             args: argparse.Namespace) -> float:
    """Median ms of `call` under `condition` for args.seconds (after a warm-up)."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)] \
        if condition == "busy" else []
    try:
        if spinners:
            time.sleep(0.2)  # the spinners are scheduled before the timing starts
        durations = []
        deadline = time.perf_counter() + args.seconds
        for step in range(1_000_000):
            if condition == "alternated":
                other()
            start = time.perf_counter()
            call()
            if step >= 3:  # warm-up calls are not timed
                durations.append(time.perf_counter() - start)
            if start > deadline and len(durations) >= 5:
                break
        return statistics.median(durations) * 1e3
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _table(artifacts: list[str], times: dict[tuple[int, str], list[float]],
           args: argparse.Namespace) -> str:
    lines = [f"{args.busy} busy process(es), {args.seconds:g} s per condition, medians of "
             f"{args.rounds} interleaved rounds",
             "| artifact | engine | idle ms | busy ms (slowdown) | alternated with | "
             "alternated ms (slowdown) |", "|---|---|---|---|---|---|"]
    for i, artifact in enumerate(artifacts):
        ms = {c: statistics.median(times[(i, c)]) for c in CONDITIONS}
        other = Path(artifacts[(i + 1) % len(artifacts)]).name
        lines.append(f"| {Path(artifact).name} | {_engine(Path(artifact))} | {ms['idle']:.3f} | "
                     f"{ms['busy']:.3f} ({ms['busy'] / ms['idle']:.2f}x) | {other} | "
                     f"{ms['alternated']:.3f} ({ms['alternated'] / ms['idle']:.2f}x) |")
    return "\n".join(lines)


def _engine(artifact: Path) -> str:
    import json

    return json.loads((artifact / "manifest.json").read_text())["target"]


if __name__ == "__main__":
    main()
