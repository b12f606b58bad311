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
assert ember.__file__.startswith(sys.argv[3]), ember.__file__  # this copy, not the checkout
from ember.compiler.api import compile_model
compile_model({"model": "builtin:tiny-cnn", "target": sys.argv[1], "output": sys.argv[2]})
"""
TARGETS = [
    "cpu",
    pytest.param("tvm", marks=pytest.mark.tvm),
    pytest.param("fpga", marks=pytest.mark.skipif(shutil.which("g++") is None,
                                                   reason="the fpga target needs g++")),
]


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


@pytest.mark.parametrize("target", TARGETS)
def test_two_directories_give_the_same_bytes(two_copies, target, tmp_path):
    if target == "tvm":
        pytest.importorskip("tvm")
    digests = []
    for index, parent in enumerate(two_copies):
        out = tmp_path / f"out{index}" / target
        env = {**os.environ, "PYTHONPATH": str(parent)}
        subprocess.run([sys.executable, "-c", COMPILE, target, str(out), str(parent)],
                       cwd=parent, env=env, check=True, capture_output=True, timeout=600)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            for private in (str(parent), str(tmp_path), sys.prefix):
                assert private.encode() not in data, (path.name, private)
        digests.append({p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in files})
    assert digests[0] == digests[1]
    assert "manifest.json" in digests[0] and len(digests[0]) >= 3


def test_pat_tuning_gives_the_same_bytes_in_every_process(tmp_path):
    """PAT draws LoRA and HSM initial weights: seeded from the pass's seed, not from whatever
    the process drew before (which differs with Python's hash seed). Before the seed, three
    runs gave three different files."""
    from ember.tools.conformance.families import save_family

    folder = save_family("llama", tmp_path / "llama")
    flag = ("prune:method=pat,ratio=0.25,steps=4,batch=2,seq=16,hsm_rank=4,round_to=4,"
            f"data=text:{folder / 'corpus.txt'}")
    digests = set()
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out{hash_seed}"
        subprocess.run([sys.executable, "-m", "ember", "compile", "--model", f"hf:{folder}",
                        "--tokens", "8", "--pass", flag, "-o", str(out), "--quiet"],
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}, check=True,
                       capture_output=True, timeout=600)
        digests.add(hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest())
    assert len(digests) == 1
