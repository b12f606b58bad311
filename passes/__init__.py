"""Graph passes on torch modules. `PASSES` is the literal registry, name -> pass class."""

from __future__ import annotations

from ember.passes.contract import Pass, PassContext, PassResult, Tolerance
from ember.passes.fold_bn import FoldBatchNorm
from ember.passes.prune.structural import StructuralPruning
from ember.passes.sfc.lower import SFCLowering
from ember.passes.spike.quantize import SpikeQuantization

PASSES: dict[str, type] = {
    "fold_bn": FoldBatchNorm,
    "prune": StructuralPruning,
    "sfc": SFCLowering,
    "spike": SpikeQuantization,
}

__all__ = ["PASSES", "Pass", "PassContext", "PassResult", "Tolerance"]
