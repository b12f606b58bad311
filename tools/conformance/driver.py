"""Running jobs through worker processes: a crash (a segfault inside an engine) or a case
that runs past its time costs that case, recorded as internal, and a fresh worker goes on
with the next one."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CASE_TIMEOUT_S = 600


def run_jobs(jobs: list[tuple[str, str, str]], on_result: Callable[[dict[str, Any]], None],
             timeout_s: float = CASE_TIMEOUT_S) -> None:
    """Every job's result, in order, handed to `on_result` as it arrives."""
    with tempfile.TemporaryDirectory(prefix="ember-conformance-") as tmp:
        jobs_file = Path(tmp) / "jobs.tsv"
        jobs_file.write_text("".join("\t".join(job) + "\n" for job in jobs))
        start = 0
        while start < len(jobs):
            for result in _worker_results(jobs_file, start, Path(tmp), timeout_s):
                on_result(result)
                start = result["index"] + 1
                if result.get("lost"):
                    break


def _worker_results(jobs_file: Path, start: int, tmp: Path,
                    timeout_s: float) -> Iterator[dict[str, Any]]:
    """The worker's results from job `start` on; a last "lost" result names the job it died
    or hung on."""
    command = [sys.executable, "-m", "ember.tools.conformance.worker", str(jobs_file),
               str(start), str(tmp / "work")]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    selector = selectors.DefaultSelector()
    selector.register(worker.stdout, selectors.EVENT_READ)
    current, started = start, time.monotonic()
    try:
        while True:
            if not selector.select(timeout=max(0.0, timeout_s - (time.monotonic() - started))):
                yield _lost(jobs_file, current, f"timed out after {timeout_s:.0f} s")
                return
            line = worker.stdout.readline()
            if not line:  # the worker ended: done, or died on job `current`
                if current < len(jobs_file.read_text().splitlines()):
                    yield _lost(jobs_file, current, f"the worker died (exit {worker.wait()})")
                return
            result = json.loads(line)
            yield result
            current, started = result["index"] + 1, time.monotonic()
    finally:
        worker.kill()
        worker.wait()


def _lost(jobs_file: Path, index: int, why: str) -> dict[str, Any]:
    suite, name, target = jobs_file.read_text().splitlines()[index].split("\t")
    return {"index": index, "suite": suite, "case": name, "target": target,
            "status": "internal", "detail": why, "seconds": None, "lost": True}
