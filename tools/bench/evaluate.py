"""One report row: a candidate artifact measured against its baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ember.runtime as rt
from ember.errors import UserError
from ember.progress import Progress
from ember.runtime.compare import max_errors
from ember.runtime.manifest import payload_path
from ember.tools.bench import metrics
from ember.tools.bench.baseline import Baseline
from ember.tools.bench.generation import measure_generation
from ember.tools.bench.measure import PairedTiming, interleaved
from ember.tools.bench.quality import measure_quality
from ember.tools.bench.schema import (
    ErrorVsBaseline,
    FpgaEstimate,
    Latency,
    LayerOps,
    Ops,
    Row,
)

#: files that describe an artifact rather than deploy it
_NOT_PAYLOAD = ("reference_io.npz", "ops.json")


@dataclass(frozen=True)
class BenchOptions:
    warmup: int = 3
    repeat: int | None = None
    budget_s: float = 4.0
    threads: int | None = None
    data: str | None = None
    max_quality_drop: float | None = None


def evaluate(candidate: Path, baseline: Baseline, options: BenchOptions,
             progress: Progress) -> Row:
    cand = rt.load(candidate, threads=options.threads)
    base = cand if baseline.is_self else rt.load(baseline.folder, threads=options.threads)
    inputs, _ = cand.reference_io()
    timing = _time_pair(cand, None if baseline.is_self else base, inputs, options, progress)
    outputs = cand.run(inputs), base.run(inputs)  # shared by the error and agreement metrics
    quality = measure_quality(options.data, cand, base, outputs) if options.data else None
    row = Row(
        label=candidate.name, artifact=str(candidate), model=cand.manifest["model"]["spec"],
        target=cand.manifest["target"], passes=_passes(cand.manifest),
        baseline_label=baseline.label, baseline_artifact=str(baseline.folder),
        latency=_latency(timing.candidate), baseline_latency=_latency(timing.baseline),
        speedup=timing.speedup, speedup_iqr=timing.speedup_iqr,
        throughput=_throughput(cand, inputs, timing.candidate.median_ms),
        throughput_unit="tokens/s" if _is_token_model(cand) else "items/s",
        size_bytes=_payload_bytes(cand.manifest),
        baseline_size_bytes=_payload_bytes(base.manifest),
        ops=Ops(**cand.manifest["ops"]["totals"]),
        baseline_ops=Ops(**base.manifest["ops"]["totals"]),
        layers=_layers(cand, base), error=_error(cand, *outputs), quality=quality,
        regressions=[], fpga=_fpga(cand.manifest, base.manifest),
        generation=measure_generation(cand, base, options.budget_s, progress),
    )
    return row.model_copy(update={"regressions": regressions(row, options.max_quality_drop)})


def _time_pair(cand: rt.Session, base: rt.Session | None, inputs: dict[str, np.ndarray],
               options: BenchOptions, progress: Progress) -> PairedTiming:
    try:
        base_call = base.prepared_call(inputs) if base is not None else None
    except UserError as exc:
        raise UserError(f"baseline {base.folder} cannot take {cand.folder}'s inputs: {exc}"
                        ) from None
    with progress.bar(0, f"timing {cand.folder.name}") as bar:
        def step(total: int) -> None:
            bar.total = total
            bar.update(1)

        return interleaved(cand.prepared_call(inputs), base_call, warmup=options.warmup,
                           repeat=options.repeat, budget_s=options.budget_s, on_pair=step)


def regressions(row: Row, max_quality_drop: float | None) -> list[str]:
    found = []
    if row.speedup < 1.0:
        found.append(f"slower than the baseline (speedup {row.speedup:.3f}x < 1)")
    q = row.quality
    if q is not None and max_quality_drop is not None and q.drop > max_quality_drop:
        found.append(f"{q.metric} {q.value:.4g} vs baseline {q.baseline_value:.4g}: drop "
                     f"{q.drop:.4g} > allowed {max_quality_drop:g}")
    return found


def _fpga(cand: dict[str, Any], base: dict[str, Any]) -> FpgaEstimate | None:
    """The resource model's latency and resources for an fpga candidate and its baseline."""
    if cand["format"] != "fpga" or base["format"] != "fpga":
        return None
    c, b = cand["target_info"]["estimate"], base["target_info"]["estimate"]
    return FpgaEstimate(
        device=cand["target_info"]["device"], clock_mhz=c["clock_mhz"],
        latency_us=c["latency_us"], baseline_latency_us=b["latency_us"],
        speedup=b["latency_us"] / c["latency_us"], interval_cycles=c["interval_cycles"],
        dsp=c["totals"]["dsp"], baseline_dsp=b["totals"]["dsp"], lut=c["totals"]["lut"],
        baseline_lut=b["totals"]["lut"], bram36=c["totals"]["bram36"], uram=c["totals"]["uram"])


def _latency(result) -> Latency:
    return Latency(median_ms=result.median_ms, p90_ms=result.p90_ms, min_ms=result.min_ms,
                   repeat=len(result.samples))


def _passes(manifest: dict[str, Any]) -> list[str]:
    return [f"{r['name']}({','.join(f'{k}={v}' for k, v in r['config'].items())})"
            for r in manifest["passes"] if r["modified"]]


def _is_token_model(session: rt.Session) -> bool:
    spec = session.input_specs[0]
    return spec["dtype"] == "int64" and len(spec["shape"]) == 2


def _throughput(session: rt.Session, inputs: dict[str, np.ndarray], median_ms: float) -> float:
    """Items (first input's batch) or tokens (batch x sequence) per second."""
    shape = inputs[session.input_specs[0]["name"]].shape
    items = shape[0] * (shape[1] if _is_token_model(session) else 1)
    return items / (median_ms / 1e3)


def _payload_bytes(manifest: dict[str, Any]) -> int:
    return sum(rec["bytes"] for name, rec in manifest["files"].items()
               if name not in _NOT_PAYLOAD and not name.startswith("tokenizer/"))


def _layers(cand: rt.Session, base: rt.Session) -> list[LayerOps]:
    def by_name(session: rt.Session) -> dict[str, dict[str, Any]]:
        path = payload_path(session.folder, session.manifest, session.manifest["ops"]["report"])
        report = json.loads(path.read_text())
        merged: dict[str, dict[str, Any]] = {}
        for layer in report["layers"]:
            entry = merged.setdefault(layer["name"], {"op": layer["op"], "macs": 0, "mults": 0})
            entry["macs"] += layer["macs"]
            entry["mults"] += layer["mults"]
        return merged

    c, b = by_name(cand), by_name(base)
    empty = {"op": "", "macs": 0, "mults": 0}
    return [LayerOps(name=name, op=(b.get(name) or c[name])["op"],
                     baseline_macs=b.get(name, empty)["macs"], macs=c.get(name, empty)["macs"],
                     baseline_mults=b.get(name, empty)["mults"], mults=c.get(name, empty)["mults"])
            for name in dict.fromkeys([*b, *c])]


def _error(cand: rt.Session, a: dict[str, np.ndarray], b: dict[str, np.ndarray]
           ) -> ErrorVsBaseline:
    name = cand.output_specs[0]["name"]
    max_abs, max_rel = max_errors(a[name], b[name])
    top, cosine = metrics.agreement(a[name], b[name])
    return ErrorVsBaseline(max_abs=max_abs, max_rel=max_rel, top1_agreement=top, cosine=cosine)
