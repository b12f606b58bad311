"""The ember runtime: `load(artifact_dir)` -> Session. Imports no torch.

manifest.py reads and hash-checks an artifact, trust.py checks its optional signature;
session.py validates inputs (signature.py) and runs the engine; generation.py and
sampling.py generate text with a generation artifact's KV cache; engines/ has one engine per
artifact format, chosen from a literal table; gpu/ holds the gpu engine's programs and
Triton kernels; compare.py and timing.py check and time outputs. The runtime imports
nothing from passes, compiler or tools.

    import ember.runtime as rt
    sess = rt.load("out/digits-cpu")          # checks every payload's sha256 first
    outs = sess.run({"image": x})              # dict of numpy arrays in and out
    rt.load("from-elsewhere", trusted_key="team.pub")   # and signed by that key
    rt.load("out/smollm2-gen").generate(prompt_ids, max_new_tokens=64)   # --generate artifacts
    t = sess.benchmark({"image": x}, warmup=10, repeat=50)   # median_ms, p90_ms, samples
"""

from __future__ import annotations

from pathlib import Path

from ember.runtime.engines import open_engine
from ember.runtime.manifest import check_files, read_manifest
from ember.runtime.session import Session
from ember.runtime.timing import BenchmarkResult


def load(artifact: str | Path, threads: int | None = None, device: str | None = None,
         trusted_key: str | Path | None = None) -> Session:
    """Open an artifact: manifest, hash check of every file, then the engine for its format
    (`device`: for `gpu` artifacts, "cuda" by default or "cpu" for the reference path).
    With `trusted_key` (an Ed25519 public key file), the artifact must also carry a valid
    signature by that key (runtime/trust.py)."""
    folder = Path(artifact)
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    if trusted_key is not None:
        from ember.runtime.trust import check_signature

        check_signature(folder, trusted_key)
    return Session(folder, manifest, open_engine(folder, manifest, threads, device))


__all__ = ["BenchmarkResult", "Session", "load"]
