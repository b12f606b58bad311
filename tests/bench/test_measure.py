"""Speedup arithmetic on synthetic timings, and the interleaving order."""

from __future__ import annotations

import pytest

from ember.tools.bench import measure
from ember.tools.bench.measure import choose_repeat, interleaved, paired_speedup


def test_speedup_is_the_median_of_pairwise_ratios():
    # ratios baseline/candidate: 2/1 = 2, 3/2 = 1.5, 4/4 = 1, 9/3 = 3, 5/10 = 0.5
    timing = paired_speedup([1, 2, 4, 3, 10], [2, 3, 4, 9, 5])
    assert timing.ratios == (2.0, 1.5, 1.0, 3.0, 0.5)
    assert timing.speedup == 1.5
    assert timing.speedup_iqr == (1.0, 2.0)
    assert timing.candidate.median_ms == 3 and timing.baseline.median_ms == 4
    # not the ratio of medians (4 / 3 = 1.33): pairs cancel drifts of the machine
    assert timing.speedup != timing.baseline.median_ms / timing.candidate.median_ms


def test_pairs_must_match():
    with pytest.raises(ValueError):
        paired_speedup([1.0, 2.0], [1.0])


def test_repeat_fits_the_budget_within_bounds():
    assert choose_repeat(pair_ms=10.0, budget_s=1.0) == 100
    assert choose_repeat(pair_ms=10_000.0, budget_s=1.0) == measure.MIN_REPEAT
    assert choose_repeat(pair_ms=0.001, budget_s=10.0) == measure.MAX_REPEAT


def _recording(monkeypatch, durations):
    """Fake clock: each call records its name and returns the next duration for it."""
    calls: list[str] = []

    def fake_timed_ms(call) -> float:
        name = call()
        calls.append(name)
        return next(durations[name])

    monkeypatch.setattr(measure, "timed_ms", fake_timed_ms)
    return calls


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(measure.time, "sleep", pauses.append)
    return pauses


def test_interleaving_alternates_order_and_pairs_samples(monkeypatch):
    # slow calls (pairs over BLOCK_MS): blocks of one timed call, strict A B, B A alternation
    durations = {"cand": iter([500.0] * 2 + [100.0, 100.0, 200.0, 100.0]),
                 "base": iter([500.0] * 2 + [200.0, 300.0, 200.0, 400.0])}
    calls = _recording(monkeypatch, durations)
    timing = interleaved(lambda: "cand", lambda: "base", warmup=2, repeat=4, budget_s=1.0)
    assert calls[4:] == ["cand", "base", "base", "cand", "cand", "base", "base", "cand"]
    assert timing.ratios == (2.0, 3.0, 1.0, 4.0)
    assert timing.speedup == 2.5


def test_every_switch_pauses_then_settles(monkeypatch, no_pause):
    untimed: list[str] = []

    def call(name: str):
        return lambda: untimed.append(name) or name

    def fake_timed_ms(fn) -> float:
        fn()
        untimed.pop()  # this call was timed, not a settling call
        return 500.0

    monkeypatch.setattr(measure, "timed_ms", fake_timed_ms)
    interleaved(call("cand"), call("base"), warmup=1, repeat=3, budget_s=1.0)
    assert untimed == ["cand", "base", "base", "cand", "cand", "base"]
    assert no_pause == [measure.SWITCH_PAUSE_S] * 6


def test_short_calls_are_settled_before_being_timed(monkeypatch):
    timed: list[str] = []
    untimed: list[str] = []

    def cand() -> str:
        untimed.append("cand")
        return "cand"

    def base() -> str:
        untimed.append("base")
        return "base"

    def fake_timed_ms(call) -> float:
        timed.append(call())
        untimed.pop()  # this call was timed, not a settling call
        return 1.0

    monkeypatch.setattr(measure, "timed_ms", fake_timed_ms)
    monkeypatch.setattr(measure, "BLOCK_MS", 6.0)  # pairs of 2 ms: blocks of 3 calls
    interleaved(cand, base, warmup=1, repeat=2, budget_s=1.0)
    # each block: one untimed call of the engine, then three timed calls of the same engine
    assert untimed == ["cand", "base", "base", "cand"]
    assert timed[2:] == ["cand"] * 3 + ["base"] * 6 + ["cand"] * 3


def test_a_short_block_sample_is_the_median_of_its_calls(monkeypatch):
    # the first timed call after a switch is slow (the other engine's workers still spin)
    durations = {"cand": iter([1.0, 1.0] + [9.0, 1.0, 1.0] * 2),
                 "base": iter([1.0, 1.0] + [9.0, 2.0, 2.0] * 2)}
    _recording(monkeypatch, durations)
    monkeypatch.setattr(measure, "BLOCK_MS", 6.0)
    timing = interleaved(lambda: "cand", lambda: "base", warmup=1, repeat=2, budget_s=1.0)
    assert timing.ratios == (2.0, 2.0)


def test_block_length_bounds():
    assert measure.block_length(measure.BLOCK_MS * 10) == 1
    assert measure.block_length(measure.BLOCK_MS * 2) == 1
    assert measure.block_length(1e-6) == measure.MAX_BLOCK


def test_self_baseline_times_once_per_pair(monkeypatch, no_pause):
    count = 0

    def fake_timed_ms(call) -> float:
        nonlocal count
        count += 1
        return 1.0

    monkeypatch.setattr(measure, "timed_ms", fake_timed_ms)
    timing = interleaved(lambda: None, None, warmup=1, repeat=5, budget_s=1.0)
    assert count == 1 + 5
    assert timing.speedup == 1.0 and set(timing.ratios) == {1.0}
    assert no_pause == []  # nothing to switch from
