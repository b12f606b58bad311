"""The process that runs cases: reads jobs ("suite<TAB>name<TAB>target" lines) from a file,
from a given index on, and prints one JSON result line per job as soon as it is done. The
driver (driver.py) restarts it past a job that crashed or hung it.

    python -m ember.tools.conformance.worker JOBS_FILE START WORK_DIR
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from ember.tools.conformance.cases import collect
from ember.tools.conformance.run_case import run_case


def main(argv: list[str]) -> int:
    jobs_file, start, work = Path(argv[0]), int(argv[1]), Path(argv[2])
    jobs = [line.split("\t") for line in jobs_file.read_text().splitlines()]
    suites = sorted({suite for suite, _, _ in jobs[start:]})
    cases = {(c.suite, c.name): c for c in collect(suites)}
    warnings.simplefilter("ignore")
    results = _results_stream()
    for index in range(start, len(jobs)):
        suite, name, target = jobs[index]
        result = run_case(cases[(suite, name)], target, work / f"job{index}")
        print(json.dumps({"index": index, "suite": suite, "case": name, "target": target,
                          **result}), file=results, flush=True)
    return 0


def _results_stream():
    """Standard output for the results alone: whatever the engines print (C libraries write
    to file descriptor 1 directly) goes to standard error instead."""
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return results


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
