"""Shared fixtures. Nothing here downloads: models are built in the test or come from
installed offline asset packages (tests skip, naming the package, when one is missing)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _own_tuning_database(tmp_path_factory) -> None:
    """tvm compiles reuse tuning records from the user's database; tests start from none."""
    os.environ["EMBER_TUNING_DIR"] = str(tmp_path_factory.mktemp("tvm-tuning"))


@pytest.fixture
def tvm_available() -> None:
    if importlib.util.find_spec("tvm") is None:
        pytest.skip("apache-tvm is not installed (pip install 'ember[tvm]')")


@pytest.fixture
def need_asset():
    """need_asset(module, dist): skip, naming the package, when an offline asset is missing."""

    def check(module: str, dist: str) -> None:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"optional asset '{dist}' is not installed; run `make assets`")

    return check


@pytest.fixture(scope="session")
def tiny_cnn_cpu(tmp_path_factory) -> Path:
    """builtin:tiny-cnn with fold_bn, compiled for cpu once per session."""
    from ember.compiler.api import compile_model

    out = tmp_path_factory.mktemp("artifacts") / "tiny-cnn-cpu"
    return compile_model({"model": "builtin:tiny-cnn", "passes": ["fold_bn"], "target": "cpu",
                          "output": str(out)})


@pytest.fixture
def leftovers():
    """leftovers(parent, name): temporary siblings a failed write would leave behind."""

    def find(parent: Path, name: str) -> list[str]:
        return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]

    return find


@pytest.fixture(scope="session")
def tiny_cnn_tvm(tmp_path_factory) -> Path:
    """builtin:tiny-cnn with fold_bn, compiled for tvm once per session."""
    if importlib.util.find_spec("tvm") is None:
        pytest.skip("apache-tvm is not installed (pip install 'ember[tvm]')")
    from ember.compiler.api import compile_model

    out = tmp_path_factory.mktemp("artifacts") / "tiny-cnn-tvm"
    return compile_model({"model": "builtin:tiny-cnn", "passes": ["fold_bn"], "target": "tvm",
                          "output": str(out)})
