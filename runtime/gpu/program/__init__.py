"""`gpu` programs on their device: loading program.json and its weights (load), a traced
CNN's nodes (graph), a Llama-style LM (llama), and the projections both use (linear).
"""
