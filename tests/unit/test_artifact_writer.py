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
