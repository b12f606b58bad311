"""report.json, schema version 1: one row per benchmarked artifact.

The schema is these pydantic models; `report.schema.json` (written beside every report) is
their JSON Schema. Conventions: times in milliseconds, sizes in bytes, energy in microjoules
(an estimate, see targets/opcount/nodes.py), `speedup` = median over interleaved pairs of
baseline time / candidate time (> 1 means the candidate is faster).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latency(_Frozen):
    median_ms: float
    p90_ms: float
    min_ms: float
    repeat: int


class Ops(_Frozen):
    params: int
    bytes: int
    macs: int
    mults: int
    adds: int
    energy_uj: float
    unknown_layers: int = 0  # layers whose shapes are only known at run time: not counted


class LayerOps(_Frozen):
    name: str
    op: str
    baseline_macs: int
    macs: int
    baseline_mults: int
    mults: int


class ErrorVsBaseline(_Frozen):
    """Candidate outputs vs baseline outputs on the candidate's reference inputs."""

    max_abs: float
    max_rel: float  # max|a - b| / max|b|
    top1_agreement: float | None  # argmax over the last axis; None for non-float outputs
    cosine: float  # mean cosine similarity over the last axis


class Quality(_Frozen):
    """A task metric on real data, for the candidate and its baseline."""

    metric: str  # "perplexity" | "top1" | "agreement"
    data: str  # e.g. "text:pydoc", "digits", "agreement"
    value: float
    baseline_value: float
    higher_is_better: bool
    drop: float  # how much worse than the baseline: absolute for top1/agreement, relative
    #              (value / baseline - 1) for perplexity; <= 0 means no worse
    samples: int  # windows, images or reference outputs scored
    detail: str = ""


class FpgaEstimate(_Frozen):
    """fpga artifacts: the resource model's figures (estimates, not synthesis results); the
    latency columns of the row are the measured C simulation."""

    device: str
    clock_mhz: float
    latency_us: float  # cycle estimate at the clock
    baseline_latency_us: float
    speedup: float  # baseline estimate / candidate estimate
    interval_cycles: int
    dsp: int
    baseline_dsp: int
    lut: int
    baseline_lut: int
    bram36: int
    uram: int


class GenerationTiming(_Frozen):
    """Generation artifacts: the stored prompt's prefill and greedy decode steps, interleaved
    with the baseline's (tools/bench/generation.py)."""

    prompt_tokens: int
    new_tokens: int
    rounds: int
    ttft_ms: float  # time to first token: the prompt's prefill and its argmax
    baseline_ttft_ms: float
    decode_tokens_per_s: float  # one-token decode steps after the first token
    baseline_decode_tokens_per_s: float
    peak_rss_bytes: int  # a process that loads the artifact and generates once
    baseline_peak_rss_bytes: int
    greedy_tokens_equal: int  # leading greedy tokens equal to the baseline's
    greedy_agreement: float  # share of the new_tokens positions with the baseline's token


class Row(_Frozen):
    label: str
    artifact: str
    model: str
    target: str
    passes: list[str]  # "name(k=v,...)" for passes that modified the model
    baseline_label: str
    baseline_artifact: str
    latency: Latency
    baseline_latency: Latency
    speedup: float
    speedup_iqr: tuple[float, float]  # 25th and 75th percentiles of the pairwise ratios
    throughput: float
    throughput_unit: str  # "items/s" or "tokens/s"
    size_bytes: int  # payload files, without reference I/O and the op report
    baseline_size_bytes: int
    ops: Ops
    baseline_ops: Ops
    layers: list[LayerOps]
    error: ErrorVsBaseline
    quality: Quality | None
    regressions: list[str]  # empty when nothing regressed
    fpga: FpgaEstimate | None = None
    generation: GenerationTiming | None = None


class Machine(_Frozen):
    cpu: str
    cores: int
    machine: str
    system: str
    cpu_features: list[str]
    threads: int  # engine threads used for timing (0: the engine's default)


class Settings(_Frozen):
    warmup: int
    repeat: int | None  # None: adaptive (as many interleaved pairs as fit the time budget)
    budget_s: float
    data: str | None
    max_quality_drop: float | None
    fail_under_speedup: float | None


class Report(_Frozen):
    schema_version: int = SCHEMA_VERSION
    created: str
    ember_version: str
    machine: Machine
    tools: dict[str, str | None]
    settings: Settings
    rows: list[Row]
    frontier: list[str]  # labels on the speed-vs-quality Pareto frontier
    regressions: list[str]  # "label: reason" for every flagged row
