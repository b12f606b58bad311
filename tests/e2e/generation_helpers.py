"""What the generation tests compare against: transformers' own greedy `generate`."""

from __future__ import annotations

import torch
import transformers as tf


def hf_greedy(folder, prompt: list[int], new_tokens: int) -> list[int]:
    """transformers' own greedy generate, stopping at the model's end-of-sequence id."""
    lm = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
    config = tf.GenerationConfig(max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=lm.generation_config.eos_token_id, pad_token_id=0)
    with torch.no_grad():
        out = lm.generate(torch.tensor([prompt]), generation_config=config)
    return out[0, len(prompt):].tolist()
