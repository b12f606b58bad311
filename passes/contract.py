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


@dataclass
class PassContext:
    """What passes need from outside the model: data, device, seed, progress, the model's
    tokenizer (language models) and a work directory for checkpoints (None: no resume)."""

    example_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calibration: list[dict[str, torch.Tensor]] = field(default_factory=list)
    device: str = "cpu"
    seed: int = 0
    progress: Progress = field(default_factory=lambda: QUIET)
    tokenizer: Any = None
    work_dir: Path | None = None


class Pass(Protocol):
    #: tolerance a pass asks verification to use; None for exact rewrites (fp32 default applies)
    tolerance: Tolerance | None

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult: ...
