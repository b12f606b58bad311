"""The `device` fixture of the kernel tests: "cuda" where a GPU is (compiled kernels), else
"cpu" under Triton's interpreter (TRITON_INTERPRET=1), which checks the kernels' logic
(indexing, masks, unpacking, epilogues) without a GPU. Skipped without triton, and the
interpreter is skipped on a machine with CUDA, where the compiled run covers the same cases.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(params=["cuda", "interpreter"])
def device(request, monkeypatch) -> str:
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        return "cuda"
    if not HAS_TRITON:
        pytest.skip("triton is not installed (the interpreter comes with it)")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the compiled kernels are tested instead")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    _let_the_interpreter_index_with_numpy_2_4(monkeypatch)
    return "cpu"


def _let_the_interpreter_index_with_numpy_2_4(monkeypatch) -> None:
    """Triton 3.6's interpreter turns scalar kernel arguments into Python ints with
    int(array) on 1-element arrays, which numpy >= 2.4 refuses; index through .item()."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__",
                       lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", patched)
