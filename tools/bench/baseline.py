"""Choosing each artifact's baseline.

Default: the same model, example and target options compiled with no passes for the same
target, built on the fly into REPORT_DIR/baselines/ (reused on later runs when its recorded
config is identical). An artifact whose passes changed nothing is its own baseline. Explicit
`--baseline DIR`s are matched by model spec and input signature, preferring the same target;
a candidate whose model spec no baseline shares (a pruned model saved as its own `hf:` folder)
takes the one baseline of the same target and input signature, if exactly one fits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.errors import UserError
from ember.progress import Progress
from ember.runtime.manifest import read_manifest


@dataclass(frozen=True)
class Baseline:
    folder: Path
    label: str
    is_self: bool


def baseline_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The candidate's resolved config without passes (output left to the caller)."""
    config = dict(manifest["config"])
    config.update(passes=[], output=None)
    return config


def choose_baseline(candidate: Path, explicit: list[Path], work_dir: Path,
                    progress: Progress) -> Baseline:
    manifest = read_manifest(candidate)
    if explicit:
        return _matching(candidate, manifest, explicit)
    if not any(record["modified"] for record in manifest["passes"]):
        return Baseline(candidate, f"{candidate.name} (itself: no pass changed the model)", True)
    return _built(manifest, work_dir, progress)


def _matching(candidate: Path, manifest: dict[str, Any], explicit: list[Path]) -> Baseline:
    fits, same_shape = [], []
    for folder in explicit:
        other = read_manifest(folder)
        if other["signature"]["inputs"] != manifest["signature"]["inputs"]:
            continue
        if other["model"]["spec"] == manifest["model"]["spec"]:
            fits.append((other["target"] != manifest["target"], folder))
        elif other["target"] == manifest["target"]:
            same_shape.append((False, folder))
    if not fits and len(same_shape) == 1:
        fits = same_shape
    if not fits:
        raise UserError(f"no --baseline matches {candidate} (same model "
                        f"{manifest['model']['spec']} and input signature, or one baseline "
                        "of the same target and input signature, needed)")
    folder = sorted(fits)[0][1]
    return Baseline(folder, folder.name, folder.resolve() == candidate.resolve())


def _built(manifest: dict[str, Any], work_dir: Path, progress: Progress) -> Baseline:
    from ember.compiler.api import compile_model

    config = baseline_config(manifest)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{config['model'].rpartition(':')[2].rpartition('/')[2]}-{config['target']}-{digest}"
    folder = work_dir / "baselines" / name
    if folder.exists():
        existing = read_manifest(folder)
        if {**existing["config"], "output": None} == config:
            return Baseline(folder, f"{name} (no passes)", False)
    with progress.stage(f"building baseline {name}"):
        compile_model({**config, "output": str(folder)}, force=True, progress=progress)
    return Baseline(folder, f"{name} (no passes)", False)
