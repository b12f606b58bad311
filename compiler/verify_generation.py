"""Verification of a generation artifact's decode steps against the torch model's own
greedy `generate` (KV cache on), through the runtime like a user would.

The artifact is fed the torch model's tokens (teacher forcing): step k's logits are
compared with the torch model's step-k logits under the compile's tolerance, on the same
context whatever the artifact would have chosen. The artifact's greedy continuation equals
torch's up to the first step where its argmax differs from torch's token, so that step
count is the token-for-token agreement. Exact artifacts (fp32) must agree on every token
and every step's logits; lossy ones (spiking, integer) report both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ember.compiler.generation import GenerationReference
from ember.errors import VerificationError
from ember.runtime.compare import Tolerance, compare_outputs

if TYPE_CHECKING:
    from ember.runtime.session import Session


def verify_generation(session: Session, reference: GenerationReference, tolerance: Tolerance,
                      exact: bool) -> dict[str, Any]:
    from ember.runtime.generation import KVDecoder

    decoder = KVDecoder(session)
    steps = [decoder.feed(reference.prompt)[0]]
    steps += [decoder.feed(np.array([[token]], np.int64))[0] for token in reference.tokens[:-1]]
    chosen = [int(np.argmax(logits)) for logits in steps]
    agree = next((k for k, (a, b) in enumerate(zip(chosen, reference.tokens, strict=True))
                  if a != b), len(chosen))
    logits = compare_outputs({f"step {k}": v for k, v in enumerate(steps)},
                             {f"step {k}": v for k, v in enumerate(reference.step_logits)},
                             tolerance)
    worst = max(logits["outputs"].values(), key=lambda o: o["max_abs"] or 0.0)
    result = {
        "status": "passed" if agree == len(chosen) and logits["status"] == "passed" else
                  "differs",
        "prompt_tokens": int(reference.prompt.shape[1]),
        "new_tokens": len(chosen),
        "greedy_tokens_equal": agree,
        "step_logits": {"passed": logits["status"] == "passed", "max_abs": worst["max_abs"],
                        "max_rel": worst["max_rel"]},
        "reference": "the torch model's generate (greedy, KV cache), teacher-forced",
    }
    if exact and result["status"] != "passed":
        raise VerificationError(
            f"verification failed: the greedy continuation equals the torch model's for "
            f"{agree} of {len(chosen)} tokens; decode-step logits max abs error "
            f"{worst['max_abs']:.3g} (atol={tolerance.atol:g}, rtol={tolerance.rtol:g})")
    return result
