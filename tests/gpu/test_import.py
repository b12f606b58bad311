"""ember.runtime.gpu imports and answers `gpu_available` on a machine without Triton or CUDA;
the check script refuses to run without CUDA (exit 2, one line)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

# a meta-path finder that makes `import triton` fail, as on a machine without it
NO_TRITON = """
import importlib.abc, sys
class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] == 'triton':
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoTriton())
"""


def test_import_without_triton() -> None:
    code = NO_TRITON + """
import ember.runtime.gpu as gpu
import torch
ok, reason = gpu.gpu_available()
assert not ok and reason, (ok, reason)
assert 'triton' not in sys.modules
x = torch.randn(8, 128).half()
assert gpu.int4_gemv(x[0], gpu.pack_int4(x.float())).shape == (1, 8)
print(reason)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip()


def test_auto_backend_is_the_reference_on_cpu() -> None:
    from ember.runtime.gpu.device import use_triton

    assert not use_triton("reference", torch.zeros(1))
    if not torch.cuda.is_available():
        assert use_triton("auto", torch.zeros(1)) == _interpreting()


def test_gpu_check_exits_2_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        import pytest

        pytest.skip("this machine has CUDA")
    script = REPO / "tools" / "gpu_check" / "main.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert len((out.stdout + out.stderr).strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_gpu_check_makes_a_copy_of_the_tree_importable(tmp_path: Path) -> None:
    """Without an install of the tree it runs from, the script's shim must load *that* tree
    as `ember`, without ember.runtime's and ember.passes' heavier __init__ imports."""
    copy = tmp_path / "tree"
    for folder in ("runtime", "passes", "tools"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for module in REPO.glob("*.py"):  # the root package and its shared modules
        shutil.copy(module, copy / module.name)
    code = f"""
import runpy, sys
module = runpy.run_path({str(copy / "tools" / "gpu_check" / "main.py")!r}, run_name="gpu_check")
package = module["ensure_ember"]()
import ember, ember.tools.gpu_check.sfc as check
assert str(package) == {str(copy)!r}, package
assert check.__file__.startswith(ember.__path__[0]), check.__file__
assert "ember.runtime.manifest" not in sys.modules and "ember.passes.contract" not in sys.modules
print(ember.__file__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def _interpreting() -> bool:
    import importlib.util
    import os

    return (os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
            and importlib.util.find_spec("triton") is not None)
