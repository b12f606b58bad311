"""Shared fixtures. Nothing here downloads: models are built in the test or come from
installed offline asset packages (tests skip, naming the package, when one is missing)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _import_triton_for_its_interpreter() -> None:
    """Triton's own helpers (tl.cdiv, tl.sum, ...) are @jit functions that its CPU interpreter
    can run only if triton was first imported with TRITON_INTERPRET=1, and torch may import
    triton at any point of the session. So on a machine without CUDA, import it that way
    first; the variable is then unset again, and the kernel tests (tests/gpu) turn the
    interpreter on per test."""
    if importlib.util.find_spec("triton") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


_import_triton_for_its_interpreter()


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
