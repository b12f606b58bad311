"""Generation artifacts in `ember bench`: time to first token, decode tokens/s, peak memory,
and how far the candidate's greedy tokens agree with the baseline's.

A run feeds the stored prompt (the prefill: its time is the time to first token, argmax
included) and then NEW_TOKENS - 1 one-token decode steps, greedy, never stopping early (an
end-of-sequence token would make the runs differ in length). Runs alternate candidate and
baseline, the order flipping each round, after one untimed run each and a pause at every
switch (tools/bench/measure.py says why); the figures are medians over the rounds. Peak
memory is each artifact's own process: a child process loads it, runs once, and reports
its peak resident set (VmHWM), which includes Python, numpy and the engine (Linux only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import ember.runtime as rt
from ember.errors import UserError
from ember.progress import Progress
from ember.runtime.generation import KVDecoder, generation_info
from ember.tools.bench.measure import SWITCH_PAUSE_S
from ember.tools.bench.schema import GenerationTiming

NEW_TOKENS = 64
MIN_ROUNDS = 3
MAX_ROUNDS = 20


def measure_generation(cand: rt.Session, base: rt.Session, budget_s: float,
                       progress: Progress) -> GenerationTiming | None:
    """None for artifacts that do not generate."""
    if "generation" not in cand.manifest:
        return None
    if "generation" not in base.manifest:
        raise UserError(f"baseline {base.folder} is not a generation artifact, so it cannot "
                        f"be compared with {cand.folder}'s decoding")
    prompt = cand.reference_io()[0]["input_ids"]
    limit = min(generation_info(s).max_length for s in (cand, base))
    new_tokens = min(NEW_TOKENS, limit - prompt.shape[1])
    first = [greedy_run(s, prompt, new_tokens) for s in (cand, base)]  # untimed warm-up
    rounds = _rounds(sum(r[0] + r[1] for r in first), budget_s)
    runs: dict[int, list[tuple[float, float, list[int]]]] = {0: [], 1: []}
    with progress.bar(rounds, f"generating with {cand.folder.name}") as bar:
        for i in range(rounds):
            for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                time.sleep(SWITCH_PAUSE_S)
                runs[side].append(greedy_run((cand, base)[side], prompt, new_tokens))
            bar.update(1)
    (c_ttft, c_decode), (b_ttft, b_decode) = (_medians(runs[0]), _medians(runs[1]))
    tokens, base_tokens = runs[0][0][2], runs[1][0][2]
    equal = next((k for k, (a, b) in enumerate(zip(tokens, base_tokens, strict=True))
                  if a != b), len(tokens))
    steps = max(new_tokens - 1, 1)
    return GenerationTiming(
        prompt_tokens=int(prompt.shape[1]), new_tokens=new_tokens, rounds=rounds,
        ttft_ms=c_ttft, baseline_ttft_ms=b_ttft,
        decode_tokens_per_s=steps / (c_decode / 1e3),
        baseline_decode_tokens_per_s=steps / (b_decode / 1e3),
        peak_rss_bytes=peak_rss(cand.folder, prompt, new_tokens),
        baseline_peak_rss_bytes=peak_rss(base.folder, prompt, new_tokens),
        greedy_tokens_equal=equal,
        greedy_agreement=float(np.mean(np.equal(tokens, base_tokens))))


def greedy_run(session: rt.Session, prompt: np.ndarray, new_tokens: int
               ) -> tuple[float, float, list[int]]:
    """(ms to the first token, ms of the decode steps after it, the tokens)."""
    decoder = KVDecoder(session)
    start = time.perf_counter()
    tokens = [int(np.argmax(decoder.feed(prompt)[0]))]
    first = time.perf_counter()
    for _ in range(new_tokens - 1):
        tokens.append(int(np.argmax(decoder.feed(np.array([[tokens[-1]]], np.int64))[0])))
    end = time.perf_counter()
    return (first - start) * 1e3, (end - first) * 1e3, tokens


def peak_rss(folder: Path, prompt: np.ndarray, new_tokens: int) -> int:
    """The peak resident set of a process that loads `folder` and generates once."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, from the forking parent
    code = ("import json, sys, numpy as np, ember.runtime as rt\n"
            "from ember.tools.bench.generation import greedy_run\n"
            "folder, prompt, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])\n"
            "greedy_run(rt.load(folder), np.array([prompt], np.int64), n)\n"
            "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
            "print(int(status.split()[0]) * 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(folder),
                           json.dumps(prompt[0].tolist()), str(new_tokens)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise UserError(f"measuring {folder}'s peak memory failed: "
                        f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return int(done.stdout.split()[-1])


def _rounds(pair_ms: float, budget_s: float) -> int:
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, budget_s * 1e3 // max(pair_ms, 1e-3))))


def _medians(runs: list[tuple[float, float, list[int]]]) -> tuple[float, float]:
    return (float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs])))
