"""Running passes in order: timing, records for the manifest, failures that say what ran."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ember.compiler.config import PassSpec
from ember.errors import UserError
from ember.passes.contract import PassContext, Tolerance


class PassFailedError(RuntimeError):
    """A pass crashed; the message names it and the passes that ran before it."""


@dataclass(frozen=True)
class PassRecord:
    name: str
    config: dict[str, Any]
    modified: bool
    stats: dict[str, Any]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_passes(model: Any, specs: list[PassSpec], ctx: PassContext) -> tuple[Any, list[PassRecord]]:
    """Apply `specs` in order to `model` (an nn.Module, or None for ONNX models)."""
    records: list[PassRecord] = []
    for spec in specs:
        pass_ = spec.build()
        config = asdict(pass_)
        start = time.perf_counter()
        if model is None:  # onnx: models are compile-only; torch passes decline them
            records.append(PassRecord(spec.name, config, False, {"skipped:onnx_model": 1}, 0.0))
            ctx.progress.warn(f"pass {spec.name} declined: it needs a torch model, not ONNX")
            continue
        with ctx.progress.stage(f"pass {spec.name}"):
            try:
                result = pass_(model, ctx)
            except UserError:
                raise
            except Exception as exc:
                ran = ", ".join(r.name for r in records) or "none"
                raise PassFailedError(
                    f"pass {spec.name} failed ({type(exc).__name__}: {exc}); "
                    f"passes already run: {ran}"
                ) from exc
        model = result.model
        records.append(PassRecord(spec.name, config, result.modified, dict(result.stats),
                                  round(time.perf_counter() - start, 4)))
    return model, records


def pass_tolerance(specs: list[PassSpec], records: list[PassRecord]) -> Tolerance | None:
    """The loosest tolerance asked for by a pass that changed the model, or None (exact)."""
    # built once each: a pass's tolerance may depend on its settings (e.g. bit widths)
    passes = [spec.build() for spec, record in zip(specs, records, strict=True)
              if record.modified]
    asked = [p.tolerance for p in passes if p.tolerance is not None]
    if not asked:
        return None
    return Tolerance(atol=max(t.atol for t in asked), rtol=max(t.rtol for t in asked))
