"""The `prune` pass: structural pruning that removes channels physically (design: pat.md).

structural.py is the pass (`StructuralPruning`); llm/ prunes decoder LMs (coupled
groups, scores, slicing, tuning under masks), cnn/ prunes CNNs from their traced dependency
graph, pat/ holds PAT's shared trainable mask (gate, HSMs, the tuning graph); lora.py the
adapters tuning trains; errors.py the one error every stage raises.
"""
