"""Atomic artifact writes: all or nothing, and --force never deletes unrelated files."""

from __future__ import annotations

import pytest

from ember.compiler.artifact import ArtifactWriter
from ember.errors import ArtifactError


def test_failure_inside_leaves_nothing(tmp_path, leftovers):
    out = tmp_path / "art"
    with pytest.raises(RuntimeError), ArtifactWriter(out) as folder:
        (folder / "model.onnx").write_text("half")
        raise RuntimeError("boom")
    assert not out.exists()
    assert leftovers(tmp_path, "art") == []


def test_commit_renames_into_place(tmp_path, leftovers):
    out = tmp_path / "nested" / "art"
    with ArtifactWriter(out) as folder:
        (folder / "manifest.json").write_text("{}")
    assert (out / "manifest.json").read_text() == "{}"
    assert leftovers(out.parent, "art") == []


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(ArtifactError, match="already exists"):
        ArtifactWriter(out)
    with ArtifactWriter(out, force=True) as folder:
        (folder / "manifest.json").write_text('{"new": 1}')
    assert (out / "manifest.json").read_text() == '{"new": 1}'


def test_force_refuses_to_replace_a_non_artifact(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_text("precious")
    with pytest.raises(ArtifactError, match="not an ember artifact"):
        ArtifactWriter(out, force=True)
    assert (out / "holiday.jpg").read_text() == "precious"


def test_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    """A compile killed with SIGKILL leaves `.out.tmp-<pid>-<id>`; the next one removes it,
    but never a temporary whose process still runs."""
    import os
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = int(finished.stdout)  # this process has exited: its pid names no writer now
    stale = tmp_path / f".out.tmp-{dead}-0badc0de"
    stale_old = tmp_path / f".out.old-{dead}-0badc0de"
    live = tmp_path / f".out.tmp-{os.getpid()}-feedf00d"
    other = tmp_path / ".outer.tmp-1-x"  # another output's name: not ours to touch
    for folder in (stale, stale_old, live, other):
        folder.mkdir()
    with ArtifactWriter(tmp_path / "out") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not stale.exists() and not stale_old.exists()
    assert live.exists() and other.exists() and (tmp_path / "out").is_dir()


def test_a_directory_that_appears_before_the_rename_is_not_replaced(tmp_path, monkeypatch):
    """Between the last check and the rename (the check is skipped here to open that
    window), a directory that appeared is refused by the rename itself, not replaced."""
    out = tmp_path / "out"
    with pytest.raises(ArtifactError, match="cannot write .*not empty"):
        with ArtifactWriter(out) as tmp:
            (tmp / "manifest.json").write_text("{}")
            out.mkdir()
            (out / "someone-elses.txt").write_text("keep me")
            monkeypatch.setattr("ember.compiler.artifact.check_output", lambda *args: None)
    assert (out / "someone-elses.txt").read_text() == "keep me"


def test_an_unwritable_parent_is_refused_before_any_work(tmp_path, monkeypatch):
    """Checked with os.access (as root, a read-only mode bit is no obstacle, so the test
    makes the answer no rather than relying on chmod)."""
    import os

    from ember.compiler.artifact import check_output

    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path)
                        else real(path, mode))
    with pytest.raises(ArtifactError, match="is not writable"):
        check_output(tmp_path / "deeper" / "out", force=False)
