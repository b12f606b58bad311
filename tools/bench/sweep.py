"""`ember bench --sweep SWEEP.yaml -o DIR`: compile and measure a grid of models x recipes x
targets, resuming from what is already built.

    models:                       # specs, or {model: SPEC, example: {...}}
      - builtin:digits-cnn
    recipes:                      # name -> pass list (the config file's `passes:` form)
      baseline: []
      folded: [fold_bn]
    targets: [cpu, tvm]
    data: digits                  # optional; --data on the command line wins

Artifacts go to DIR/artifacts/<model>-<recipe>-<target>; one whose recorded config equals the
wanted one is reused. A recipe with no passes is each model's baseline (one named `baseline`
is added when the sweep has none); every artifact is measured against the baseline of its
model and target, and the report marks the speed-vs-quality frontier.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ember.compiler.config import load_config_file
from ember.errors import ConfigError
from ember.progress import Progress
from ember.tools.bench.evaluate import BenchOptions
from ember.tools.bench.schema import Report


class SweepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    example: dict[str, Any] = Field(default_factory=dict)


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[SweepModel]
    recipes: dict[str, list[Any]]
    targets: list[str]
    data: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _specs(cls, value: Any) -> Any:
        return [{"model": v} if isinstance(v, str) else v for v in value or []]


def load_sweep(path: Path) -> Sweep:
    try:
        sweep = Sweep.model_validate(load_config_file(path))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"{path}: {where}: {error['msg']}") from None
    if not (sweep.models and sweep.recipes and sweep.targets):
        raise ConfigError(f"{path}: models, recipes and targets must each be non-empty")
    if not any(not passes for passes in sweep.recipes.values()):
        sweep.recipes = {"baseline": [], **sweep.recipes}
    return sweep


def grid_configs(sweep: Sweep, out_dir: Path) -> list[dict[str, Any]]:
    """Every (model, recipe, target) as a validated compile config with its output folder."""
    from ember.compiler.config import validate_config

    configs = []
    for entry in sweep.models:
        short = entry.model.rpartition(":")[2].rpartition("/")[2]
        for recipe, passes in sweep.recipes.items():
            for target in sweep.targets:
                folder = out_dir / "artifacts" / f"{short}-{recipe}-{target}"
                data = {"model": entry.model, "example": entry.example, "passes": passes,
                        "target": target, "output": str(folder)}
                validate_config(data, source=f"sweep {short}/{recipe}/{target}")
                configs.append(data)
    return configs


def build_grid(configs: list[dict[str, Any]], progress: Progress) -> list[Path]:
    """Build what is missing or stale; models are prepared once per (model, recipe)."""
    from ember.compiler.api import build, prepare, resolve_config

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for config in configs:
        key = (config["model"], repr(config["example"]), repr(config["passes"]))
        groups.setdefault(key, []).append(config)
    for members in groups.values():
        stale = [c for c in members if not _up_to_date(c)]
        if not stale:
            continue
        prepared = prepare(resolve_config(stale[0]), progress)
        for config in stale:
            build(prepared, config["output"], target=config["target"], force=True,
                  progress=progress)
    return [Path(c["output"]) for c in configs]


def _up_to_date(config: dict[str, Any]) -> bool:
    from ember.compiler.api import resolve_config
    from ember.errors import ArtifactError
    from ember.runtime.manifest import read_manifest

    try:
        recorded = read_manifest(config["output"])["config"]
    except ArtifactError:
        return False
    return recorded == resolve_config(config).model_dump(mode="json", exclude={"output"})


def run_sweep(path: Path, out_dir: Path, options: BenchOptions, fail_under_speedup: float | None,
              progress: Progress) -> Report:
    from ember.tools.bench.runner import run_bench

    sweep = load_sweep(path)
    options = replace(options, data=options.data or sweep.data)
    configs = grid_configs(sweep, out_dir)
    artifacts = build_grid(configs, progress)
    baselines = [Path(c["output"]) for c in configs if not c["passes"]]
    return run_bench(artifacts, out_dir, options, baselines, fail_under_speedup, progress)
