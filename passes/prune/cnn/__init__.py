"""Channel pruning of CNNs: tracing with op tables (trace), dependency groups of channels that
must go together (groups), and the pruning itself, scores and fine-tuning (prune).
"""
