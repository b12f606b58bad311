"""Graph passes on torch modules. `PASSES` is the literal registry, name -> pass class.

contract.py is the pass contract (PassContext, PassResult, the TuningData a pass may ask
for); a small pass is one module (fold_bn.py); a pass family that outgrew one file is a
sub-package: prune/ (structural pruning, PAT), spike/ (spiking quantization), sfc/ (fast
convolution lowering); decoders/ holds the transformers decoder layouts prune and spike
share. modules.py holds module-tree surgery they share. Passes import no
targets, compiler or tools.
"""

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
