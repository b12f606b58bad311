"""The artifact manifest: reading it and checking every payload file's sha256.

An artifact directory holds `manifest.json` plus the files it lists under "files", each with
its sha256 and size, and `artifact.sha256`, the sha256 of the manifest's bytes (in
`sha256sum` format): one digest that covers the manifest and, through it, every payload file.
Loading refuses a missing manifest or digest, an unknown schema, a missing file or a hash
mismatch, before any payload (which may be native code) is touched.

The digest catches an edited manifest (a loosened tolerance, a redirected file name); it is
not a signature: whoever can rewrite the manifest can rewrite the digest beside it. To trust
an artifact from elsewhere, compare its `artifact.sha256` with the one its builder published.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator

from ember.errors import ArtifactError

MANIFEST = "manifest.json"
DIGEST = "artifact.sha256"
SCHEMA_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(artifact: str | Path) -> dict[str, Any]:
    folder = Path(artifact)
    if not folder.is_dir():
        raise ArtifactError(f"artifact directory not found: {folder}")
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} is not an ember artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: unsupported manifest schema "
                            f"{manifest.get('schema') if isinstance(manifest, dict) else None!r}")
    _check_structure(path, manifest)
    return manifest


class _Tensor(BaseModel):
    name: str
    shape: list[int | str]
    dtype: str

    @field_validator("dtype")
    @classmethod
    def _numpy_dtype(cls, value: str) -> str:
        import ml_dtypes  # noqa: F401  (registers bfloat16, float8 and int4 names with numpy)

        np.dtype(value)  # raises TypeError for names numpy does not know
        return value


class _FileRecord(BaseModel):
    sha256: str
    bytes: int


class _Shape(BaseModel):
    """The parts of a manifest the runtime relies on (other keys are informational)."""

    files: dict[str, _FileRecord] = Field(min_length=1)
    format: str
    target: str
    signature: dict[str, list[_Tensor]]
    verification: dict[str, Any]
    target_info: dict[str, Any]
    reference_io: str
    ops: dict[str, Any]


def _check_structure(path: Path, manifest: dict[str, Any]) -> None:
    try:
        shape = _Shape.model_validate(manifest)
    except (ValidationError, TypeError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": exc}
        where = ".".join(str(p) for p in detail["loc"]) or "manifest"
        raise ArtifactError(f"{path}: malformed manifest at {where}: {detail['msg']}") from None
    if set(shape.signature) != {"inputs", "outputs"}:
        raise ArtifactError(f"{path}: malformed manifest: signature needs inputs and outputs")


def payload_path(folder: Path, manifest: dict[str, Any], name: Any) -> Path:
    """The path of a file the manifest lists (and so hash-checks), confined to the artifact."""
    if not isinstance(name, str) or name not in manifest["files"]:
        raise ArtifactError(f"{folder}: the manifest refers to {name!r}, which is not among its "
                            "hash-checked files")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ArtifactError(f"{folder}: {name} resolves outside the artifact")
    return path


def digest_line(folder: Path) -> str:
    """The `artifact.sha256` line for the manifest now in `folder`."""
    return f"{sha256_file(folder / MANIFEST)}  {MANIFEST}\n"


def check_files(artifact: str | Path, manifest: dict[str, Any]) -> None:
    """The manifest matches `artifact.sha256`, and every file it lists exists and matches
    its sha256."""
    folder = Path(artifact)
    _check_digest(folder)
    for name, record in manifest["files"].items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ArtifactError(f"{folder}: manifest lists a file outside the artifact: {name}")
        if not path.resolve().is_relative_to(folder.resolve()):
            raise ArtifactError(f"{folder}: {name} resolves outside the artifact")
        if not path.is_file():
            raise ArtifactError(f"{folder}: payload file {name} is missing")
        actual = sha256_file(path)
        if actual != record.get("sha256"):
            raise ArtifactError(
                f"{folder}: sha256 checksum mismatch for {name} (expected "
                f"{str(record.get('sha256'))[:12]}..., found {actual[:12]}...): "
                "the file was modified after compile; refusing to load"
            )


def _check_digest(folder: Path) -> None:
    path = folder / DIGEST
    try:
        recorded = path.read_text() if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        recorded = ""
    if recorded is None:
        raise ArtifactError(f"{folder}: {DIGEST} is missing (an artifact from an older ember: "
                            "recompile it); refusing to load")
    if recorded != digest_line(folder):
        raise ArtifactError(f"{folder}: {MANIFEST} does not match {DIGEST}: the manifest was "
                            "modified after compile; refusing to load")
