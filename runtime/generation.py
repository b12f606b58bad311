"""Text generation over a generation artifact: prefill, then one-token decode steps that
carry the KV cache from each call's `present.*` outputs to the next call's `past.*`
inputs (the graph's layout is in compiler/models/decoding.py). An engine that keeps a cache
of its own (`tvm`: a static cache, runtime/engines/tvm_cache.py) is fed the new tokens
only, one cache per sequence.

    sess = rt.load("out/smollm2-gen")
    ids = sess.generate(prompt_ids, max_new_tokens=64)              # greedy: list of ids
    rows = sess.generate([ids_a, ids_b], max_new_tokens=64)         # a batch, left-padded
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

MASK = "attention_mask"

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
    """A batch of sequences' state: the cache and the attention mask after the tokens fed
    so far (rows left-padded to one length; padding has mask 0)."""

    def __init__(self, session: Session, batch: int = 1) -> None:
        self.session = session
        self.info = generation_info(session)
        self._cache = empty_cache(session, batch)
        self._mask = np.zeros((batch, 0), np.int64)
        self.length = 0
        # engines with a cache of their own (tvm's static one) keep it across calls
        own_cache = getattr(session.engine, "cache_layout", None) is not None
        self._rows = [session.engine.open_cache() for _ in range(batch)] if own_cache else None

    def feed(self, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Run `ids` ([batch, t] int64; `mask` 0 where they are padding) after what was fed
        before; the logits of each row's last token, [batch, vocab]."""
        if self.length + ids.shape[1] > self.info.max_length:
            raise InputError(f"{self.length + ids.shape[1]} tokens exceed the artifact's "
                             f"max_length {self.info.max_length}")
        new = np.ones_like(ids) if mask is None else mask
        if self._rows is not None:
            self.length += ids.shape[1]
            return np.stack([row.feed(i, m)[-1] for row, i, m in
                             zip(self._rows, ids, new.astype(np.int64), strict=True)])
        self._mask = np.concatenate([self._mask, new.astype(np.int64)], axis=1)
        outputs = self.session.run({"input_ids": ids, MASK: self._mask, **self._cache})
        self._cache = {past: outputs[present] for past, present in
                       zip(self.info.past_inputs, self.info.present_outputs, strict=True)}
        self.length += ids.shape[1]
        return outputs["logits"][:, -1]


def prefill_logits(session: Session, ids: np.ndarray) -> np.ndarray:
    """Every position's logits of `ids` ([batch, t]) run as one prefill with an empty
    cache: what a prefill-only artifact returns, for perplexity."""
    return session.run({"input_ids": ids, MASK: np.ones_like(ids),
                        **empty_cache(session, ids.shape[0])})["logits"]


def empty_cache(session: Session, batch: int) -> dict[str, np.ndarray]:
    """The cache inputs of `batch` sequences with nothing cached yet."""
    specs = {s["name"]: s for s in session.input_specs}
    return {name: _empty(specs, name, batch) for name in generation_info(session).past_inputs}


GREEDY = Sampling()


def stream(session: Session, input_ids: Any, max_new_tokens: int = 32,
           sampling: Sampling = GREEDY, seed: int | None = None,
           stop: Iterable[int] = ()) -> Iterator[int]:
    """One sequence's new tokens, one by one as they are decoded (arguments checked before
    the first)."""
    prompts, batched = prompt_rows(input_ids)
    if batched:
        raise InputError("stream takes one sequence; generate takes a batch")
    steps = _start(session, prompts, max_new_tokens, sampling, seed, stop)
    return (tokens[0] for tokens in steps)


def generate(session: Session, input_ids: Any, max_new_tokens: int = 32,
             sampling: Sampling = GREEDY, seed: int | None = None,
             stop: Iterable[int] = ()) -> list[int] | list[list[int]]:
    """The new tokens of one sequence, or of each sequence of a batch (a list of token-id
    lists, or a [batch, t] array), run together left-padded."""
    prompts, batched = prompt_rows(input_ids)
    new: list[list[int]] = [[] for _ in prompts]
    for tokens in _start(session, prompts, max_new_tokens, sampling, seed, stop):
        for row, token in zip(new, tokens, strict=True):
            if token is not None:
                row.append(token)
    return new if batched else new[0]


def _start(session: Session, prompts: list[np.ndarray], max_new_tokens: int,
           sampling: Sampling, seed: int | None, stop: Iterable[int]
           ) -> Iterator[list[int | None]]:
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    ids, mask = left_padded(prompts)
    decoder = KVDecoder(session, batch=len(prompts))
    if ids.shape[1] >= decoder.info.max_length:
        raise InputError(f"the prompt has {ids.shape[1]} tokens; the artifact's max_length "
                         f"is {decoder.info.max_length}")
    stops = set(decoder.info.eos_token_ids) | _stop_ids(stop)
    return _decode(decoder, ids, mask, max_new_tokens, sampling, np.random.default_rng(seed),
                   stops)


def _decode(decoder: KVDecoder, ids: np.ndarray, mask: np.ndarray, max_new_tokens: int,
            sampling: Sampling, rng: np.random.Generator, stops: set[int]
            ) -> Iterator[list[int | None]]:
    """Per step, each row's new token (None once the row has stopped)."""
    logits = decoder.feed(ids, mask)
    last = [0] * len(ids)
    stopped = [False] * len(ids)
    for produced in range(1, max_new_tokens + 1):
        tokens: list[int | None] = [None if done else next_token(row, sampling, rng)
                                    for row, done in zip(logits, stopped, strict=True)]
        yield tokens
        for i, token in enumerate(tokens):
            if token is not None:
                last[i], stopped[i] = token, token in stops
        if all(stopped) or produced == max_new_tokens or \
                decoder.length + 1 >= decoder.info.max_length:  # the sequence with `token`
            return
        logits = decoder.feed(np.array(last, np.int64)[:, None])


def _stop_ids(stop: Iterable[int]) -> set[int]:
    try:
        ids = list(stop)
    except TypeError:
        raise InputError(f"stop takes a list of token ids, got {stop!r}") from None
    if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in ids):
        raise InputError(f"stop takes token ids (integers), got {ids!r}")
    return {int(t) for t in ids}


def prompt_rows(input_ids: Any) -> tuple[list[np.ndarray], bool]:
    """The prompts as 1-D int64 arrays, and whether a batch was given: a list of ids or a
    [t] array is one prompt, as is a [1, t] array; a [b, t] array or a list of id lists is
    a batch."""
    if isinstance(input_ids, (list, tuple)) and input_ids and all(
            isinstance(row, (list, tuple, np.ndarray)) for row in input_ids):
        return [_ids(row) for row in input_ids], True
    ids = np.asarray(input_ids) if not isinstance(input_ids, np.ndarray) else input_ids
    if ids.ndim == 2:
        return [_ids(row) for row in ids], ids.shape[0] > 1
    return [_ids(ids)], False


def _ids(row: Any) -> np.ndarray:
    try:
        ids = np.asarray(row)
    except (TypeError, ValueError):
        raise InputError("input_ids must be sequences of token ids") from None
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"input_ids must be non-empty sequences of integer token ids, got "
                         f"shape {list(ids.shape)} of {ids.dtype}")
    return ids.astype(np.int64)


def left_padded(prompts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """([batch, T] ids, [batch, T] mask): each prompt right-aligned, padding id 0, mask 0."""
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    return ids, mask


def _empty(specs: dict[str, dict[str, Any]], name: str, batch: int) -> np.ndarray:
    spec = specs.get(name)
    if spec is None or len(spec["shape"]) != 4 or not all(
            isinstance(spec["shape"][i], int) for i in (1, 3)):
        raise ArtifactError(f"the generation block names cache input {name!r}, which the "
                            f"signature does not have as [batch, heads, past, head_dim]")
    _, heads, _, head_dim = spec["shape"]
    return np.zeros((batch, heads, 0, head_dim), spec["dtype"])
