"""The same config gives byte-identical artifacts (payloads and manifest) from two copies of
ember in different directories, written to different output paths: nothing of the checkout's
or the environment's paths, the host or the clock lands in an artifact."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ember

COMPILE = """
import sys
import ember
assert ember.__file__.startswith(sys.argv[2]), ember.__file__  # this copy, not the checkout
from ember.compiler.api import prepare, build, resolve_config
targets = sys.argv[3:]
prepared = prepare(resolve_config({"model": "builtin:tiny-cnn", "target": targets[0]}))
for target in targets:
    build(prepared, f"{sys.argv[1]}/{target}", target=target)
"""


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory) -> list[Path]:
    """ember's source copied under two unrelated directories (each holds `ember/`)."""
    source = Path(ember.__file__).parent
    ignore = shutil.ignore_patterns(".*", "tests", "__pycache__", "*.egg-info")
    copies = []
    for name in ("first", "elsewhere/second-checkout"):
        parent = tmp_path_factory.mktemp("copy") / name
        shutil.copytree(source, parent / "ember", ignore=ignore)
        copies.append(parent)
    return copies


def _targets() -> list[str]:
    """cpu always; tvm and fpga where their toolchains are here (the others skip then)."""
    import importlib.util

    return ["cpu", *(["tvm"] if importlib.util.find_spec("tvm") else []),
            *(["fpga"] if shutil.which("g++") else [])]


def test_two_directories_give_the_same_bytes(two_copies, tmp_path):
    """One process per copy builds every target from one prepared model (the export, the
    part that carried the paths, runs once per copy)."""
    targets = _targets()
    digests = []
    for index, parent in enumerate(two_copies):
        out = tmp_path / f"out{index}"
        env = {**os.environ, "PYTHONPATH": str(parent)}
        subprocess.run([sys.executable, "-c", COMPILE, str(out), str(parent), *targets],
                       cwd=parent, env=env, check=True, capture_output=True, timeout=900)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            for private in (str(parent), str(tmp_path), sys.prefix):
                assert private.encode() not in data, (path.name, private)
        digests.append({p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in files})
    assert digests[0] == digests[1]
    for target in targets:
        assert f"{target}/manifest.json" in digests[0] and f"{target}/artifact.sha256" in \
            digests[0]


def test_pat_tuning_gives_the_same_bytes_in_every_process(tmp_path):
    """PAT draws LoRA and HSM initial weights: seeded from the pass's seed, not from whatever
    the process drew before (which differs with Python's hash seed). Before the seed, three
    runs gave three different files."""
    from ember.tools.conformance.families import save_family

    folder = save_family("llama", tmp_path / "llama")
    flag = ("prune:method=pat,ratio=0.25,steps=4,batch=2,seq=16,hsm_rank=4,round_to=4,"
            f"data=text:{folder / 'corpus.txt'}")
    args = ["compile", "--model", f"hf:{folder}", "--tokens", "8", "--pass", flag, "--quiet"]
    from ember.tools.cli.main import main

    assert main([*args, "-o", str(tmp_path / "here")]) == 0  # this process
    subprocess.run([sys.executable, "-m", "ember", *args, "-o", str(tmp_path / "there")],
                   env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True,
                   capture_output=True, timeout=600)  # another, with its own hash seed
    here, there = ((tmp_path / d / "model.onnx").read_bytes() for d in ("here", "there"))
    assert hashlib.sha256(here).hexdigest() == hashlib.sha256(there).hexdigest()
