"""PAT, pruning-aware tuning (pat.md §3): the shared trainable mask's gate (gate), the Hybrid
Sparsification Modules and Identity Loss (hsm), and the LM's tuning graph under masks (model).
"""
