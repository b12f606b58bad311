"""Writing artifact directories atomically.

Files are written into a hidden temporary sibling of the output directory, which is renamed
into place only after the manifest is complete; on any error the temporary directory is
removed, so an interrupted or failed compile leaves nothing behind. With `force`, an existing
artifact (a directory holding a manifest, or an empty one) is replaced after the new one is
complete; any other existing path is refused, so `--force` never deletes unrelated files.

A temporary directory is named after the process that writes it (`.<out>.tmp-<pid>-<id>`);
one left by a process that no longer runs (killed with SIGKILL mid-write) and owned by this
user is removed when the next compile to the same output starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ember.errors import ArtifactError
from ember.runtime.manifest import DIGEST, MANIFEST, digest_line

#: temporary directories being written by this process, for abandon_writes()
_WRITING: set[Path] = set()


def file_in_the_way(folder: Path) -> Path | None:
    """The first of `folder`'s ancestors that exists and is not a directory, if any."""
    return next((p for p in folder.absolute().parents if p.exists() and not p.is_dir()), None)


def check_output(output: Path, force: bool) -> None:
    """Refuse an existing output before any work starts (unless it is a replaceable artifact)."""
    blocked = file_in_the_way(output)
    if blocked is not None:
        raise ArtifactError(f"cannot write {output}: {blocked} is a file, not a directory")
    parent = next(p for p in output.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):  # found now, not after the whole compile
        raise ArtifactError(f"cannot write {output}: {parent} is not writable")
    if not output.exists() and not output.is_symlink():
        return
    if not force:
        raise ArtifactError(f"output directory {output} already exists (use --force to replace it)")
    replaceable = output.is_dir() and not output.is_symlink() and (
        (output / MANIFEST).is_file() or not any(output.iterdir())
    )
    if not replaceable:
        raise ArtifactError(f"{output} exists and is not an ember artifact; refusing to replace it")


class ArtifactWriter:
    """`with ArtifactWriter(out, force) as tmp:` write into `tmp`; committed on success."""

    def __init__(self, output: Path, force: bool = False) -> None:
        self.output = output
        self.force = force
        check_output(output, force)
        self.tmp = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.output)
        self.tmp.mkdir()
        _WRITING.add(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        _WRITING.discard(self.tmp)
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._commit()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _commit(self) -> None:
        check_output(self.output, self.force)  # it may have appeared while we worked
        trash = None
        if self.force and self.output.exists():  # without force nothing is moved aside
            trash = self.output.parent / (f".{self.output.name}.old-{os.getpid()}-"
                                          f"{uuid.uuid4().hex[:8]}")
            self.output.rename(trash)
        try:
            self.tmp.rename(self.output)
        except OSError as exc:  # a non-empty directory appeared there since the check
            if trash is not None:
                with contextlib.suppress(OSError):
                    trash.rename(self.output)
            raise ArtifactError(f"cannot write {self.output}: {exc.strerror}") from None
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def abandon_writes() -> None:
    """Remove the temporary directories this process is writing: for a process about to
    exit without unwinding (tools/cli/signals.py), so a signal still leaves nothing."""
    for tmp in list(_WRITING):
        shutil.rmtree(tmp, ignore_errors=True)
        _WRITING.discard(tmp)


def sweep_stale(output: Path) -> list[Path]:
    """Remove this user's temporary siblings of `output` whose writing process is gone."""
    removed = []
    for path in output.parent.glob(f".{output.name}.*-*-*"):
        kind, _, rest = path.name[len(output.name) + 2:].partition("-")
        pid = rest.partition("-")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """`manifest.json`, and `artifact.sha256`, its digest (runtime/manifest.py)."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    (folder / DIGEST).write_text(digest_line(folder))
