"""The compile pipeline: load -> passes -> export -> target -> verify -> artifact.

`prepare` does the target-independent half once (load, passes, export, reference outputs);
`build` turns a prepared model into a verified artifact for one target. `compile_model` is
both in one call, as `ember compile` and `ember.compile()` use it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember import __version__
from ember.compiler.artifact import ArtifactWriter, check_output, write_manifest
from ember.compiler.config import CompileConfig, load_config_file, validate_config
from ember.compiler.data.tuning import LocalData
from ember.compiler.generation import GenerationReference, decoding_model
from ember.compiler.models import load_model
from ember.compiler.models.loaded import LoadedModel
from ember.compiler.pipeline import PassRecord, pass_tolerance, run_passes
from ember.compiler.probe import Probe, find_probe, is_degenerate
from ember.compiler.provenance import tool_versions
from ember.compiler.reference_noise import NOISE_FACTOR, reference_error
from ember.compiler.verify import load_artifact, verify_artifact, verify_probe
from ember.compiler.verify_generation import verify_generation
from ember.errors import (
    ConfigError,
    UnsupportedModelError,
    UserError,
    VerificationError,
    first_line,
)
from ember.passes.contract import PassContext
from ember.passes.spike.report import spike_report
from ember.progress import QUIET, Progress
from ember.runtime.compare import Tolerance, describe_failure
from ember.runtime.manifest import SCHEMA_VERSION, file_record
from ember.targets import TARGETS
from ember.targets.base import ModuleSource
from ember.targets.onnx_io import signature
from ember.targets.opcount.nodes import count_ops

REFERENCE_IO = "reference_io.npz"
OP_REPORT = "ops.json"
TOKENIZER_DIR = "tokenizer"


@dataclass
class Prepared:
    """A model after passes, exported, with its reference outputs; ready for any target."""

    config: CompileConfig
    loaded: LoadedModel
    model: Any  # nn.Module after passes, or None for onnx: models
    records: list[PassRecord]
    onnx_model: Any
    reference_outputs: dict[str, np.ndarray]
    tolerance: Tolerance
    model_record: dict[str, Any]  # the manifest's "model" entry (hashing weights once)
    op_report: dict[str, Any]  # per-layer op counts of the exported graph (targets/opcount)
    #: onnx: models whose reference outputs come from onnx's reference evaluator, because
    #: ONNX Runtime cannot run them: ONNX Runtime's reason (None: it ran them)
    onnxruntime_failure: str | None = None
    #: degenerate reference outputs: inputs that give non-degenerate ones, or why none do
    #: (compiler/probe.py); None when the reference is not degenerate
    probe: Probe | str | None = None
    #: generation artifacts: the manifest's generation block and the torch continuation
    generation: GenerationReference | None = None


def resolve_config(config: CompileConfig | dict[str, Any] | str | Path, source: str | None = None,
                   **overrides: Any) -> CompileConfig:
    """A CompileConfig from a config object, a mapping or a YAML path, with overrides applied."""
    if isinstance(config, CompileConfig):
        data = config.model_dump()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        data = load_config_file(config)
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: expected a mapping of keys at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    source = source or (str(config) if isinstance(config, (str, Path)) else "config")
    return validate_config(data, source=source)


def prepare(config: CompileConfig, progress: Progress = QUIET) -> Prepared:
    with progress.stage(f"loading {config.model}"):
        loaded = load_model(config.model, config.example, config.seed, progress)
    model_record = _model_record(loaded)  # before passes: the weights as loaded
    examples = _torch_inputs(loaded) if loaded.module is not None else {}  # onnx: no passes,
    #                                    and inputs torch has no dtype for (bfloat16, float8)
    ctx = PassContext(example_inputs=examples, seed=config.seed, progress=progress,
                      data=LocalData(loaded.info.get("tokenizer")), work_dir=work_dir(config))
    model, records = run_passes(loaded.module, config.passes, ctx)
    generation = None
    if config.generate is not None and model is not None:
        with progress.stage("the decode graph, and the torch model's own greedy generate"):
            model, loaded, generation = decoding_model(model, loaded, config.generate)
    elif config.generate is not None:
        raise UnsupportedModelError("generation artifacts need a torch causal LM; onnx: "
                                    "models are compile-only")
    ort_failure = None
    if model is None:
        onnx_model = loaded.onnx_model
        with progress.stage("reference outputs (onnxruntime on the source model)"):
            reference, ort_failure = _onnx_reference(onnx_model, loaded)
    else:
        with progress.stage("reference outputs (torch model after passes)"):
            reference = _torch_reference(model, loaded)
        with progress.stage("exporting to ONNX"):
            from ember.compiler.export import export_onnx

            onnx_model = export_onnx(model, loaded.export_inputs or loaded.inputs,
                                     loaded.output_names, loaded.dynamic_dims)
    probe = (_probe(model, onnx_model, loaded, reference, progress)
             if is_degenerate(reference) else None)
    tolerance = _tolerance(config, loaded, records)
    if model is not None and tolerance.atol < EXACT_CLASS_ATOL:
        with progress.stage("measuring the fp32 reference's own rounding (float64 run)"):
            error = reference_error(model, loaded.inputs, reference)
        tolerance = _with_reference_noise(tolerance, error, config)
    with progress.stage("counting operations"):
        op_report = count_ops(onnx_model, _count_dims(generation, loaded))
        spiking = spike_report(model) if model is not None else None
        if spiking is not None:
            op_report["spiking"] = spiking
    return Prepared(config, loaded, model, records, onnx_model, reference, tolerance,
                    model_record, op_report, ort_failure, probe, generation)


def _count_dims(generation: GenerationReference | None, loaded: LoadedModel
                ) -> dict[str, int] | None:
    """A generation graph is counted as its prefill of the stored prompt (an empty cache),
    comparable with a prefill artifact of that length."""
    if generation is None:
        return None
    tokens = int(loaded.inputs["input_ids"].shape[1])
    return {"batch": 1, "tokens": tokens, "positions": tokens, "past": 0}


def _probe(model: Any, onnx_model: Any, loaded: LoadedModel,
           reference: dict[str, np.ndarray], progress: Progress) -> Probe | str:
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model is not None:
            return _torch_reference(model, loaded, inputs)
        return _onnx_reference(onnx_model, loaded, inputs)[0]

    with progress.stage("the reference outputs are degenerate: probing other inputs"):
        return find_probe(loaded.inputs, reference, run)


def build(prepared: Prepared, output: str | Path, *, target: str | None = None,
          force: bool = False, progress: Progress = QUIET) -> Path:
    """Compile `prepared` for `target` into the artifact directory `output`, verified."""
    config = prepared.config.model_copy(update={"target": target or prepared.config.target,
                                                "output": str(output)})
    config = validate_config(config.model_dump())  # target options re-checked for this target
    spec = TARGETS[config.target]
    available, why = spec.available()
    if not available:
        raise UserError(f"target {config.target} is not available here: {why}")
    if prepared.onnxruntime_failure and config.target == "cpu":  # its engine is ONNX Runtime
        raise UnsupportedModelError(prepared.onnxruntime_failure)
    output = Path(output)
    with ArtifactWriter(output, force) as folder:
        with progress.stage(f"compiling for {config.target}"):
            payload = _compile_payload(spec, prepared, folder, config, progress)
        np.savez(folder / REFERENCE_IO, **_reference_arrays(prepared, payload.golden))
        (folder / OP_REPORT).write_text(json.dumps(prepared.op_report, indent=1))
        extra = [REFERENCE_IO, OP_REPORT, *_save_tokenizer(prepared.loaded, folder)]
        manifest = _manifest(prepared, config, payload, folder, extra)
        write_manifest(folder, manifest)
        manifest["verification"] = _verify(prepared, config, spec.executable, folder, progress,
                                           payload)
        write_manifest(folder, manifest)
    return output


def _compile_payload(spec: Any, prepared: Prepared, folder: Path, config: CompileConfig,
                     progress: Progress) -> Any:
    generation = prepared.generation.info if prepared.generation else None
    source = ModuleSource(prepared.onnx_model, prepared.model, prepared.loaded.inputs,
                          prepared.loaded.output_names, prepared.loaded.calibration, generation)
    return spec.compile(source, folder, config.target_options, progress)


def compile_model(config: CompileConfig | dict[str, Any] | str | Path, *, force: bool = False,
                  progress: Progress = QUIET, source: str | None = None,
                  **overrides: Any) -> Path:
    """Compile per `config`; returns the artifact directory. Raises UserError on bad input."""
    config = resolve_config(config, source, **overrides)
    if not config.output:
        raise ConfigError("no output directory: set `output:` in the config or pass -o DIR")
    check_output(Path(config.output), force)  # fail before the expensive work
    prepared = prepare(config, progress)
    folder = build(prepared, config.output, force=force, progress=progress)
    shutil.rmtree(work_dir(config), ignore_errors=True)  # checkpoints served their purpose
    return folder


def work_dir(config: CompileConfig) -> Path | None:
    """Where passes keep resumable state (tuning checkpoints): `.<output>.work` beside the
    output, kept until the compile succeeds, so rerunning the same command resumes."""
    if not config.output:
        return None
    output = Path(config.output).absolute()
    return output.parent / f".{output.name}.work"


def _torch_inputs(loaded: LoadedModel, inputs: dict[str, np.ndarray] | None = None
                  ) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v) for k, v in (inputs or loaded.inputs).items()}


def _torch_reference(model: Any, loaded: LoadedModel,
                     inputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    import torch

    try:
        with torch.no_grad():
            out = model(*_torch_inputs(loaded, inputs).values())
    except Exception as exc:
        raise UserError(f"the model failed on its example inputs: {type(exc).__name__}: "
                        f"{first_line(exc)}") from None
    outs = out if isinstance(out, (tuple, list)) else [out]
    if len(outs) != len(loaded.output_names) or not all(isinstance(o, torch.Tensor) for o in outs):
        raise UserError("the model must return a tensor (or a tuple of tensors)")
    return {n: o.detach().numpy() for n, o in zip(loaded.output_names, outs, strict=True)}


def _onnx_reference(onnx_model: Any, loaded: LoadedModel,
                    inputs: dict[str, np.ndarray] | None = None
                    ) -> tuple[dict[str, np.ndarray], str | None]:
    """(the source model's outputs, None) from ONNX Runtime; where it cannot run the model,
    (the outputs of onnx's reference evaluator, ONNX Runtime's reason); a decline when
    neither runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures surface as the exception below
    try:
        session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        outs = session.run(loaded.output_names, inputs or loaded.inputs)
        return _as_declared(onnx_model, dict(zip(loaded.output_names, outs, strict=True))), None
    except Exception as exc:  # ORT raises its own Fail / InvalidArgument / NotImplemented types
        failure = f"ONNX Runtime cannot run the source model: {first_line(exc)}"
    try:
        from onnx.reference import ReferenceEvaluator

        outs = ReferenceEvaluator(onnx_model).run(loaded.output_names, inputs or loaded.inputs)
    except Exception:  # the evaluator's own error kinds: ORT's reason is the one to give
        raise UnsupportedModelError(failure) from None
    return {n: np.asarray(o) for n, o in zip(loaded.output_names, outs, strict=True)}, failure


def _as_declared(onnx_model: Any, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX Runtime returns float8 and 4-bit outputs as their raw bytes (uint8): viewed as the
    type the graph declares, so the reference has the artifact's dtype."""
    from onnx import helper

    from ember.runtime.engines.onnxruntime_engine import as_declared

    declared = {o.name: o.type.tensor_type.elem_type for o in onnx_model.graph.output}
    return {name: as_declared(array, helper.tensor_dtype_to_np_dtype(declared[name]))
            if declared.get(name) else array for name, array in outputs.items()}


def _tolerance(config: CompileConfig, loaded: LoadedModel, records: list[PassRecord]) -> Tolerance:
    """The loosest of the model's own tolerance and what its passes ask (a pass never makes
    the check tighter than the model's engine-to-engine noise); explicit settings win."""
    asked = pass_tolerance(config.passes, records)
    base = loaded.tolerance if asked is None else Tolerance(
        atol=max(asked.atol, loaded.tolerance.atol), rtol=max(asked.rtol, loaded.tolerance.rtol))
    return Tolerance(atol=config.verify.atol if config.verify.atol is not None else base.atol,
                     rtol=config.verify.rtol if config.verify.rtol is not None else base.rtol)


EXACT_CLASS_ATOL = 1e-3  # tolerances below this are exact-rewrite checks, bounded by fp32 noise


def _with_reference_noise(tolerance: Tolerance, error: float | None,
                          config: CompileConfig) -> Tolerance:
    """atol raised to NOISE_FACTOR x the fp32 reference's own error (compiler/
    reference_noise.py), unless the user set atol."""
    if error is None or config.verify.atol is not None:
        return tolerance
    return Tolerance(atol=max(tolerance.atol, NOISE_FACTOR * error), rtol=tolerance.rtol)


def _reference_arrays(prepared: Prepared, golden: dict[str, np.ndarray] | None
                      ) -> dict[str, np.ndarray]:
    """Reference inputs and the outputs `ember run --check` expects: the torch model's, or an
    integer target's golden outputs (then the torch outputs are kept as float_output:)."""
    arrays = {f"input:{k}": v for k, v in prepared.loaded.inputs.items()}
    if golden is None:
        arrays.update({f"output:{k}": v for k, v in prepared.reference_outputs.items()})
        return arrays
    arrays.update({f"output:{k}": v for k, v in golden.items()})
    arrays.update({f"float_output:{k}": v for k, v in prepared.reference_outputs.items()})
    return arrays


def _model_record(loaded: LoadedModel) -> dict[str, Any]:
    info = {k: v for k, v in loaded.info.items() if isinstance(v, (int, float, str, list))}
    return {"spec": loaded.spec, "kind": loaded.kind, "description": loaded.description,
            "weight_sha256": loaded.weight_sha256(), "params": loaded.parameter_count(),
            "info": info}


def _save_tokenizer(loaded: LoadedModel, folder: Path) -> list[str]:
    """Language models ship their tokenizer (tokenizer.json and config) inside the artifact."""
    tokenizer = loaded.info.get("tokenizer")
    if tokenizer is None:
        return []
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    return sorted(str(p.relative_to(folder)) for p in (folder / TOKENIZER_DIR).rglob("*")
                  if p.is_file())


def _manifest(prepared: Prepared, config: CompileConfig, payload, folder: Path,
              extra_files: list[str]) -> dict[str, Any]:
    files = {name: file_record(folder / name) for name in [*payload.files, *extra_files]}
    return {
        "schema": SCHEMA_VERSION,
        "ember_version": __version__,
        "model": prepared.model_record,
        "target": config.target,
        "format": payload.format,
        "files": files,
        "signature": signature(prepared.onnx_model),
        "reference_io": REFERENCE_IO,
        "ops": {"report": OP_REPORT, "totals": prepared.op_report["totals"]},
        "tokenizer": TOKENIZER_DIR if prepared.loaded.info.get("tokenizer") is not None else None,
        "passes": [r.as_dict() for r in prepared.records],
        "verification": {"status": "pending"},
        "target_info": payload.info,
        "tools": tool_versions(),
        **({"generation": prepared.generation.info} if prepared.generation else {}),
        # no clock, host or output path: the same config gives the same bytes anywhere
        "config": config.model_dump(mode="json", exclude={"output"}),
    }


def _verify(prepared: Prepared, config: CompileConfig, executable: bool, folder: Path,
            progress: Progress, payload: Any) -> dict[str, Any]:
    if payload.golden is not None:
        return _verify_golden(prepared, config, folder, progress, payload.golden)
    checked = _with_precision(prepared.tolerance, payload.precision, prepared.reference_outputs,
                              config)
    tolerance = {"atol": checked.atol, "rtol": checked.rtol}
    if not executable:
        return {"status": "skipped", "reason": f"the {config.target} target does not execute",
                "tolerance": tolerance}
    if not config.verify.enabled:
        return {"status": "skipped", "reason": "disabled (--no-verify)", "tolerance": tolerance}
    with progress.stage("verifying against the reference"):
        session = load_artifact(folder, payload.verify_device)
        result = verify_artifact(session, prepared.loaded.inputs, prepared.reference_outputs,
                                 checked)
    if payload.verify_device is not None:
        result["device"] = payload.verify_device
    if prepared.onnxruntime_failure:
        result["reference"] = "onnx's reference evaluator (ONNX Runtime cannot run the model)"
    if result["status"] != "passed":
        raise VerificationError(f"verification failed: {describe_failure(result)}")
    if prepared.probe is not None:
        probe = prepared.probe
        probe_tolerance = checked if isinstance(probe, str) else _with_precision(
            prepared.tolerance, payload.precision, probe.outputs, config)
        result["probe"] = verify_probe(session, probe, probe_tolerance)
    layers = _verify_integer_layers(prepared, progress)
    if layers is not None:
        result["integer_layers"] = layers
    if prepared.generation is not None:
        with progress.stage("verifying decode steps against the torch model's generate"):
            result["generation"] = verify_generation(
                session, prepared.generation, checked, exact=prepared.tolerance.atol <
                EXACT_CLASS_ATOL and payload.precision is None)
    return result


def _with_precision(tolerance: Tolerance, precision: tuple[float, float] | None,
                    reference: dict[str, np.ndarray], config: CompileConfig) -> Tolerance:
    """A reduced-precision payload's floor: atol = fraction x the reference's largest
    magnitude, rtol as given; settings the user made win."""
    if precision is None:
        return tolerance
    scale = max(float(np.abs(v).max()) for v in reference.values() if v.size)
    atol = tolerance.atol if config.verify.atol is not None else max(tolerance.atol,
                                                                     precision[0] * scale)
    rtol = tolerance.rtol if config.verify.rtol is not None else max(tolerance.rtol,
                                                                     precision[1])
    return Tolerance(atol=atol, rtol=rtol)


def _verify_golden(prepared: Prepared, config: CompileConfig, folder: Path, progress: Progress,
                   golden: dict[str, np.ndarray]) -> dict[str, Any]:
    """Integer targets: the artifact must reproduce its golden model exactly; how far that is
    from the float model (after passes) is reported, not bounded."""
    exact = Tolerance(atol=0.0, rtol=0.0)
    if not config.verify.enabled:
        return {"status": "skipped", "reason": "disabled (--no-verify)",
                "tolerance": {"atol": 0.0, "rtol": 0.0}}
    with progress.stage("verifying against the integer golden model"):
        result = verify_artifact(load_artifact(folder), prepared.loaded.inputs, golden, exact)
    if result["status"] != "passed":
        raise VerificationError(f"verification failed against the golden model: "
                                f"{describe_failure(result)}")
    result["reference"] = "integer golden model (exact)"
    result["float_model"] = float_agreement(golden, prepared.reference_outputs)
    return result


def float_agreement(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]
                    ) -> dict[str, Any]:
    """Per output: max |difference| against the float model, relative to its range, and for
    outputs with a class axis (the last) the share of rows whose argmax agrees."""
    report = {}
    for name, ref in reference.items():
        out = outputs[name]
        span = float(np.ptp(ref)) or 1.0
        entry: dict[str, Any] = {"max_abs_error": float(np.abs(out - ref).max()),
                                 "max_error_of_range": float(np.abs(out - ref).max() / span)}
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            entry["top1_agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
        report[name] = entry
    return report


def _verify_integer_layers(prepared: Prepared, progress: Progress) -> dict[str, Any] | None:
    """Spiking layers: each one in the exported graph against its torch layer on the same
    input (compiler/verify_layers.py); None for models without them."""
    from ember.compiler.verify_layers import check_integer_layers

    if prepared.model is None or spike_report(prepared.model) is None:
        return None
    with progress.stage("verifying integer layers one by one"):
        layers = check_integer_layers(prepared.onnx_model, prepared.model,
                                      prepared.loaded.inputs)
    if layers is None or layers["layers"] != prepared.op_report["spiking"]["layers"]:
        found = 0 if layers is None else layers["layers"]
        raise VerificationError(f"verification failed: found {found} of "
                                f"{prepared.op_report['spiking']['layers']} spiking layers "
                                f"in the exported graph")
    if layers["max_relative_error"] > layers["bound"]:
        raise VerificationError(
            f"verification failed: integer layer {layers['worst']} differs from its torch "
            f"layer by {layers['max_relative_error']:.3g} of its output range "
            f"(bound {layers['bound']:g})")
    return layers
