"""The pass contract: a pass is a frozen dataclass whose fields are its configuration.

Fields are validated in `__post_init__` (a bad value raises `ValueError` naming the field);
calling the pass with a model and a `PassContext` returns a `PassResult`. `modified` is
truthful: running a pass twice gives `False` the second time. A layer a pass cannot handle is
counted in `stats` under a `skipped:<reason>` key, never skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ember.errors import ConfigError
from ember.progress import QUIET, Progress
from ember.runtime.compare import Tolerance

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class PassResult:
    model: nn.Module
    modified: bool
    stats: dict[str, Any]


DATA_SPECS = ("text:NAME", "digits")


class TuningData(Protocol):
    """Tuning and calibration data by spec, loaded on the compiler's side (compiler/data/
    tuning.py) and handed to passes in their context: passes open no files and name no
    corpora, so they run on whatever data the caller provides."""

    def text_windows(self, spec: str, seq: int) -> torch.Tensor:
        """(n, seq) int64 token windows of the corpus `spec` ("text:NAME"), tokenized with
        the model's tokenizer; only the corpus's tuning half."""

    def digit_batches(self, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The digits training split as shuffled (images, labels) batches."""


@dataclass
class PassContext:
    """What passes need from outside the model: example inputs, calibration batches, tuning
    data by spec (None: none was provided), device, seed, progress and a work directory for
    checkpoints (None: no resume)."""

    example_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calibration: list[dict[str, torch.Tensor]] = field(default_factory=list)
    data: TuningData | None = None
    device: str = "cpu"
    seed: int = 0
    progress: Progress = field(default_factory=lambda: QUIET)
    work_dir: Path | None = None

    def tuning_data(self, spec: str) -> TuningData:
        """The context's data source, or a ConfigError naming the spec that needed one."""
        if self.data is None:
            raise ConfigError(f"data {spec}: no tuning data was provided to the pass "
                              f"(PassContext.data)")
        return self.data


def check_data_spec(spec: str) -> None:
    """ValueError unless `spec` is one of DATA_SPECS."""
    if spec != "digits" and not (spec.startswith("text:") and len(spec) > len("text:")):
        raise ValueError(f"data must be one of {', '.join(DATA_SPECS)}, got {spec!r}")


class Pass(Protocol):
    #: tolerance a pass asks verification to use; None for exact rewrites (fp32 default applies)
    tolerance: Tolerance | None

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult: ...
