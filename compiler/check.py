"""`ember check`: what ember would do with a model, answered before any long work.

For each pass asked: `applies`, `partly` (which layers it transforms, which it keeps and why)
or `declines` (why). fold_bn and sfc run on a copy of the model (seconds); prune and spike
answer from the model's structure without tuning or calibrating (their `support`). For each
target: `applies` or `declines`, from what the target checks before building (its
`support`: ONNX Runtime loading the graph, TVM importing it, the fpga and gpu targets
reading the torch model). Also the model's size, signature and the op kinds it holds.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from ember.compiler.config import ExampleSpec, PassSpec
from ember.compiler.models import load_model
from ember.compiler.models.loaded import LoadedModel
from ember.errors import UserError, first_line
from ember.progress import QUIET, Progress

MOST_COMMON_OPS = 12


def check_model(spec: str, example: ExampleSpec, passes: list[PassSpec], targets: list[str],
                progress: Progress = QUIET) -> dict[str, Any]:
    """{"model": ..., "findings": [{"what", "status", "detail"}], "ok": none declines}."""
    with progress.stage(f"loading {spec}"):
        loaded = load_model(spec, example, 0, progress)
    findings = [_check_pass(p, loaded) for p in passes]
    if targets:
        source = _source(loaded, progress)
        findings += [_check_target(name, source, progress) for name in targets]
    return {"model": _summary(loaded), "findings": findings,
            "ok": all(f["status"] != "declines" for f in findings)}


def _summary(loaded: LoadedModel) -> dict[str, Any]:
    if loaded.module is not None:
        kinds = Counter(type(m).__name__ for m in loaded.module.modules()
                        if not list(m.children()))
        params = sum(p.numel() for p in loaded.module.parameters())
    else:
        kinds = Counter(n.op_type for n in loaded.onnx_model.graph.node)
        params = loaded.parameter_count()
    return {"spec": loaded.spec, "kind": loaded.kind, "description": loaded.description,
            "params": params, "inputs": {k: [str(v.dtype), list(v.shape)]
                                         for k, v in loaded.inputs.items()},
            "outputs": loaded.output_names, "ops": dict(kinds.most_common(MOST_COMMON_OPS)),
            "op_kinds": len(kinds)}


def _check_pass(spec: PassSpec, loaded: LoadedModel) -> dict[str, Any]:
    what = f"pass {spec.name}"
    if loaded.module is None:
        return _finding(what, "declines", "onnx: models compile as they are; passes work on "
                                          "torch models")
    the_pass = spec.build()
    example = _torch_example(loaded)
    if hasattr(the_pass, "support"):
        return _finding(what, *the_pass.support(loaded.module, example))
    from ember.passes import PassContext

    ctx = PassContext(example_inputs={next(iter(loaded.inputs)): example})
    try:
        result = the_pass(copy.deepcopy(loaded.module), ctx)
    except UserError as exc:
        return _finding(what, "declines", first_line(exc))
    return _finding(what, *_from_stats(result.modified, result.stats))


def _from_stats(modified: bool, stats: dict[str, Any]) -> tuple[str, str]:
    skipped = {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("skipped:")}
    done = ", ".join(f"{k} {v}" for k, v in stats.items()
                     if isinstance(v, int) and not k.startswith("skipped:") and v)
    kept = ", ".join(f"{v} x {k}" for k, v in skipped.items())
    if not modified:
        return "declines", f"nothing it transforms{f' (skipped: {kept})' if kept else ''}"
    return ("partly", f"{done}; skipped: {kept}") if kept else ("applies", done)


def _check_target(name: str, source: Any, progress: Progress) -> dict[str, Any]:
    from ember.targets import TARGETS

    what = f"target {name}"
    target = TARGETS[name]
    available, why = target.available()
    if not available:
        return _finding(what, "declines", f"not available here: {why}")
    with progress.stage(f"checking {name}"):
        try:
            reason = target.support(source)
        except UserError as exc:
            reason = first_line(exc)
    return _finding(what, "declines", reason) if reason else _finding(what, "applies", why)


def _source(loaded: LoadedModel, progress: Progress) -> Any:
    """The ModuleSource a compile without passes would give the targets."""
    from ember.targets.base import ModuleSource

    onnx_model = loaded.onnx_model
    if onnx_model is None:
        from ember.compiler.export import export_onnx

        with progress.stage("exporting to ONNX"):
            onnx_model = export_onnx(loaded.module, loaded.inputs, loaded.output_names,
                                     loaded.dynamic_dims)
    return ModuleSource(onnx_model, loaded.module, loaded.inputs, loaded.output_names,
                        loaded.calibration)


def _torch_example(loaded: LoadedModel) -> Any:
    import torch

    return torch.from_numpy(next(iter(loaded.inputs.values())))


def _finding(what: str, status: str, detail: str) -> dict[str, Any]:
    return {"what": what, "status": status, "detail": detail}
