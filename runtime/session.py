"""A loaded artifact: validated inputs in, named numpy outputs out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import ArtifactError, InputError, first_line
from ember.runtime.arrays import load_npz
from ember.runtime.compare import Tolerance, compare_outputs
from ember.runtime.engines import Engine
from ember.runtime.manifest import payload_path
from ember.runtime.signature import check_inputs
from ember.runtime.timing import BenchmarkResult, time_calls


def _with_prefix(data: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in data.items() if k.startswith(prefix)}


class Session:
    def __init__(self, folder: Path, manifest: dict[str, Any], engine: Engine) -> None:
        self.folder = folder
        self.manifest = manifest
        self.engine = engine

    @property
    def input_specs(self) -> list[dict[str, Any]]:
        return self.manifest["signature"]["inputs"]

    @property
    def output_specs(self) -> list[dict[str, Any]]:
        return self.manifest["signature"]["outputs"]

    @property
    def thread_safe(self) -> bool:
        return self.engine.thread_safe

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        checked = check_inputs(inputs, self.input_specs)
        try:
            outputs = self.engine.run(list(checked.values()))
        except Exception as exc:  # signature-valid inputs the engine rejects (e.g. token ids
            #                       outside the vocabulary): a problem with the values given
            raise InputError(f"the {self.manifest['format']} engine failed on these inputs: "
                             f"{first_line(exc)}") from None
        if len(outputs) != len(self.output_specs):
            raise ArtifactError(f"the {self.manifest['format']} engine returned {len(outputs)} "
                                f"outputs; the artifact's signature has "
                                f"{len(self.output_specs)}")
        return {spec["name"]: out for spec, out in zip(self.output_specs, outputs, strict=True)}

    def generate(self, input_ids: Any, max_new_tokens: int = 32, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None, stop: Iterable[int] = ()
                 ) -> list[int] | list[list[int]]:
        """Generation artifacts: the new token ids after the prompt `input_ids` (a list, or
        a [t] or [1, t] array), or after each prompt of a batch (a list of lists, or a
        [b, t] array: left-padded, one list each); greedy unless do_sample
        (runtime/generation.py)."""
        from ember.runtime.generation import generate
        from ember.runtime.sampling import Sampling

        sampling = Sampling(do_sample, temperature, top_k, top_p)
        return generate(self, input_ids, max_new_tokens, sampling, seed, stop)

    def stream(self, input_ids: Any, max_new_tokens: int = 32, do_sample: bool = False,
               temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               seed: int | None = None, stop: Iterable[int] = ()) -> Iterator[int]:
        """`generate` of one sequence, yielding each new token id as it is decoded."""
        from ember.runtime.generation import stream
        from ember.runtime.sampling import Sampling

        sampling = Sampling(do_sample, temperature, top_k, top_p)
        return stream(self, input_ids, max_new_tokens, sampling, seed, stop)

    def prepared_call(self, inputs: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """A zero-argument call of the engine on `inputs`, validated once, for timing loops."""
        ordered = list(check_inputs(inputs, self.input_specs).values())
        return lambda: self.engine.run(ordered)

    def benchmark(
        self, inputs: dict[str, np.ndarray], warmup: int = 10, repeat: int = 50
    ) -> BenchmarkResult:
        """Time the engine call (inputs validated once, outside the timed region)."""
        return time_calls(self.prepared_call(inputs), warmup=warmup, repeat=repeat)

    def reference_io(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The inputs and torch outputs stored at compile time."""
        path = payload_path(self.folder, self.manifest, self.manifest["reference_io"])
        try:
            data = load_npz(path)
        except ValueError as exc:
            raise ArtifactError(f"{self.folder}: reference inputs and outputs: {exc}") from None
        return _with_prefix(data, "input:"), _with_prefix(data, "output:")

    def check(self) -> dict[str, Any]:
        """Re-run the stored reference inputs; compare with the stored outputs under the
        tolerance the compile used (see ember.runtime.compare)."""
        inputs, reference = self.reference_io()
        tol = self.manifest["verification"].get("tolerance")
        if not isinstance(tol, dict) or set(tol) != {"atol", "rtol"} or not all(
                type(v) in (int, float) and v >= 0 for v in tol.values()):  # inf is allowed
            raise ArtifactError(f"{self.folder}: the manifest records no verification tolerance "
                                f"(atol and rtol, numbers >= 0): {tol!r}")
        return compare_outputs(self.run(inputs), reference, Tolerance(**tol))
