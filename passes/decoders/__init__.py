"""Transformers decoder families in one vocabulary, shared by the prune and spike passes.

`layouts.py` says where each role of a family lives (blocks, embedding, the linears that read
one tensor, the FFN); `views.py` gives each family its canonical form for pruning: an exact
Llama model for Phi-3 (fused projections) and Gemma (`(1 + w)` norms, scaled embedding),
`nn.Linear` in place of GPT-2's `Conv1D`, and maps a pruned canonical model back to the
user's own class.
"""
