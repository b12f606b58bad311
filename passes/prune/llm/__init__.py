"""Pruning a decoder causal LM in its canonical form (passes/decoders): coupled channel
groups (groups), post-hoc scores (scores), tuning under masks (tune), masking and slicing
(slice), end to end (prune).
"""
