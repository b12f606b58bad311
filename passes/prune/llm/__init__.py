"""Pruning a Llama-family causal LM: coupled channel groups (groups), post-hoc scores
(scores), tuning under masks (tune), masking and slicing (slice), end to end (prune).
"""
