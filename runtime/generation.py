"""Text generation over a generation artifact: prefill, then one-token decode steps that
carry the KV cache from each call's `present.*` outputs to the next call's `past.*`
inputs (the graph's layout is in compiler/models/decoding.py).

    sess = rt.load("out/smollm2-gen")
    ids = sess.generate(prompt_ids, max_new_tokens=64)              # greedy: list of ids
    for token in sess.stream(prompt_ids, do_sample=True, top_p=0.9, seed=0): ...

Generation stops after max_new_tokens, at a stop token (the model's end-of-sequence ids,
and any given as `stop`; the stop token is returned, as transformers' `generate` does), or
when prompt plus new tokens reach the artifact's max_length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ember.errors import ArtifactError, InputError
from ember.runtime.sampling import Sampling, next_token

if TYPE_CHECKING:
    from ember.runtime.session import Session


class GenerationInfo(BaseModel):
    """The manifest's `generation` block."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    max_length: int
    past_inputs: list[str]
    present_outputs: list[str]
    eos_token_ids: list[int]
    vocab_size: int


def generation_info(session: Session) -> GenerationInfo:
    block = session.manifest.get("generation")
    if block is None:
        raise InputError(f"{session.folder} is not a generation artifact (compile it with "
                         "--generate)")
    try:
        info = GenerationInfo.model_validate(block)
    except ValidationError as exc:
        raise ArtifactError(f"{session.folder}: malformed generation block in the manifest: "
                            f"{exc.errors()[0]['msg']}") from None
    if len(info.past_inputs) != len(info.present_outputs):
        raise ArtifactError(f"{session.folder}: the generation block pairs "
                            f"{len(info.past_inputs)} cache inputs with "
                            f"{len(info.present_outputs)} outputs")
    return info


class KVDecoder:
    """One sequence's state: the cache after the tokens fed so far."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.info = generation_info(session)
        specs = {s["name"]: s for s in session.input_specs}
        self._cache = {name: _empty(specs, name) for name in self.info.past_inputs}
        self.length = 0

    def feed(self, ids: np.ndarray) -> np.ndarray:
        """Run `ids` ([1, t] int64) after what was fed before; the logits of the last one."""
        if self.length + ids.shape[1] > self.info.max_length:
            raise InputError(f"{self.length + ids.shape[1]} tokens exceed the artifact's "
                             f"max_length {self.info.max_length}")
        outputs = self.session.run({"input_ids": ids, **self._cache})
        self._cache = {past: outputs[present] for past, present in
                       zip(self.info.past_inputs, self.info.present_outputs, strict=True)}
        self.length += ids.shape[1]
        return outputs["logits"][0, -1]


GREEDY = Sampling()


def stream(session: Session, input_ids: Any, max_new_tokens: int = 32,
           sampling: Sampling = GREEDY, seed: int | None = None,
           stop: Iterable[int] = ()) -> Iterator[int]:
    """The new tokens, one by one as they are decoded (arguments checked before the first)."""
    prompt = prompt_array(input_ids)
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    decoder = KVDecoder(session)
    if prompt.shape[1] >= decoder.info.max_length:
        raise InputError(f"the prompt has {prompt.shape[1]} tokens; the artifact's max_length "
                         f"is {decoder.info.max_length}")
    stops = set(decoder.info.eos_token_ids) | _stop_ids(stop)
    return _decode(decoder, prompt, max_new_tokens, sampling, np.random.default_rng(seed), stops)


def _decode(decoder: KVDecoder, prompt: np.ndarray, max_new_tokens: int, sampling: Sampling,
            rng: np.random.Generator, stops: set[int]) -> Iterator[int]:
    logits = decoder.feed(prompt)
    for produced in range(1, max_new_tokens + 1):
        token = next_token(logits, sampling, rng)
        yield token
        if token in stops or produced == max_new_tokens or \
                decoder.length + 1 >= decoder.info.max_length:  # the sequence with `token`
            return
        logits = decoder.feed(np.array([[token]], np.int64))


def _stop_ids(stop: Iterable[int]) -> set[int]:
    try:
        ids = list(stop)
    except TypeError:
        raise InputError(f"stop takes a list of token ids, got {stop!r}") from None
    if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in ids):
        raise InputError(f"stop takes token ids (integers), got {ids!r}")
    return {int(t) for t in ids}


def prompt_array(input_ids: Any) -> np.ndarray:
    """A prompt as [1, t] int64: from a list of ids, a 1-D array or a [1, t] array."""
    try:
        ids = np.asarray(input_ids)
    except (TypeError, ValueError):
        raise InputError("input_ids must be a sequence of token ids") from None
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise InputError(f"input_ids must be one sequence (batch 1), got shape {list(ids.shape)}")
    if ids.shape[1] == 0 or ids.dtype.kind not in "iu":
        raise InputError("input_ids must be a non-empty sequence of integer token ids")
    return ids.astype(np.int64)


def _empty(specs: dict[str, dict[str, Any]], name: str) -> np.ndarray:
    spec = specs.get(name)
    if spec is None or len(spec["shape"]) != 4 or not all(
            isinstance(d, int) for i, d in enumerate(spec["shape"]) if i != 2):
        raise ArtifactError(f"the generation block names cache input {name!r}, which the "
                            f"signature does not have as [batch, heads, past, head_dim]")
    batch, heads, _, head_dim = spec["shape"]
    return np.zeros((batch, heads, 0, head_dim), spec["dtype"])
