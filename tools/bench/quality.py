"""`--data` specs -> a Quality entry for a candidate session and its baseline session.

    text:CORPUS   perplexity (lower is better); language-model artifacts (input_ids -> logits)
    digits        top-1 on the held-out real digits (higher is better); (N, 1, 28, 28) inputs
    agreement     top-1 agreement with the baseline on the reference inputs (higher is better)

Language-model text is tokenized with the tokenizer shipped in the artifact; artifacts without
one (the seeded test models) use UTF-8 bytes as token ids when their vocabulary has >= 256
entries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ember.errors import UserError
from ember.runtime import Session
from ember.tools.bench import metrics
from ember.tools.bench.schema import Quality

MAX_WINDOWS = 16


def parse_data(spec: str | None) -> str | None:
    """Validate a --data spec early (before anything is built)."""
    if spec is None or spec in ("digits", "agreement") or (spec.startswith("text:") and spec[5:]):
        return spec
    raise UserError(f"--data {spec!r}: expected text:CORPUS, digits or agreement")


def measure_quality(spec: str, candidate: Session, baseline: Session,
                    reference_outputs: tuple[dict, dict] | None = None) -> Quality:
    """`reference_outputs`: (candidate, baseline) outputs on the candidate's reference inputs,
    when the caller already has them (agreement needs nothing else)."""
    if spec == "agreement":
        a, b = reference_outputs or (candidate.run(candidate.reference_io()[0]),
                                     baseline.run(candidate.reference_io()[0]))
        name = candidate.output_specs[0]["name"]
        top, _ = metrics.agreement(a[name], b[name])
        value = top if top is not None else 1.0
        return Quality(metric="agreement", data=spec, value=value, baseline_value=1.0,
                       higher_is_better=True, drop=1.0 - value, samples=int(a[name].size
                       // max(a[name].shape[-1], 1)), detail="top-1 agreement, reference inputs")
    if spec == "digits":
        return _digits(candidate, baseline)
    return _text(spec, candidate, baseline)


def _single_io(session: Session, data: str) -> tuple[dict, dict]:
    if len(session.input_specs) != 1 or len(session.output_specs) != 1:
        raise UserError(f"--data {data} needs a one-input, one-output artifact; "
                        f"{session.folder} has {len(session.input_specs)} inputs")
    return session.input_specs[0], session.output_specs[0]


def _digits(candidate: Session, baseline: Session) -> Quality:
    from ember.compiler.data.mnist import load_mnist5k

    spec, out = _single_io(candidate, "digits")
    shape = spec["shape"]
    if len(shape) != 4 or shape[1:] != [1, 28, 28] or not isinstance(shape[0], int):
        raise UserError(f"--data digits needs (N, 1, 28, 28) inputs; {candidate.folder} takes "
                        f"{shape}")
    test = load_mnist5k()[1]

    def scorer(session: Session):
        return lambda x: session.run({spec["name"]: x})[out["name"]]

    value = metrics.top1(scorer(candidate), test.images, test.labels, shape[0])
    base = metrics.top1(scorer(baseline), test.images, test.labels, shape[0])
    return Quality(metric="top1", data="digits", value=value, baseline_value=base,
                   higher_is_better=True, drop=base - value, samples=len(test.labels),
                   detail="MNIST-5k held-out split (1,000 real digits)")


def _text(spec: str, candidate: Session, baseline: Session) -> Quality:
    from ember.compiler.data.datasets import text_corpus

    window, vocab = _text_window(spec, candidate)
    tokens, tokenizer = _tokenize(text_corpus(spec[5:]), candidate, vocab)
    try:
        windows = metrics.heldout_windows(tokens, window, MAX_WINDOWS)
    except ValueError as exc:
        raise UserError(f"--data {spec}: {exc}") from None
    value = metrics.perplexity(_logits_of(candidate, spec), windows)
    base = metrics.perplexity(_logits_of(baseline, spec), windows)
    return Quality(metric="perplexity", data=spec, value=value, baseline_value=base,
                   higher_is_better=False, drop=value / base - 1.0, samples=len(windows),
                   detail=f"{len(windows)} windows of {window} tokens from the held-out half, "
                          f"{tokenizer}")


def _text_window(spec: str, session: Session) -> tuple[int, int | str]:
    """(window length, vocabulary) of a language-model artifact: its fixed input length,
    or for a generation artifact the length of its stored prompt."""
    if "generation" in session.manifest:
        prompt = session.reference_io()[0]["input_ids"]
        return int(prompt.shape[1]), session.manifest["generation"]["vocab_size"]
    inp, out = _single_io(session, spec)
    if inp["dtype"] != "int64" or len(inp["shape"]) != 2 or not isinstance(inp["shape"][1], int):
        raise UserError(f"--data {spec} needs a language-model artifact with fixed-length "
                        f"int64 token input; {session.folder} takes {inp['dtype']}{inp['shape']}")
    return inp["shape"][1], out["shape"][-1]


def _logits_of(session: Session, spec: str):
    """ids [n, window] -> logits [n, window, vocab]: one call, or a generation artifact's
    prefill with an empty cache."""
    if "generation" in session.manifest:
        from ember.runtime.generation import prefill_logits

        return lambda ids: prefill_logits(session, ids)
    inp, out = _single_io(session, spec)
    return lambda ids: session.run({inp["name"]: ids})[out["name"]]


def _tokenize(text: str, session: Session, vocab: int | str) -> tuple[np.ndarray, str]:
    folder = session.manifest.get("tokenizer")
    if folder:
        from tokenizers import Tokenizer

        from ember.runtime.manifest import payload_path

        path = payload_path(Path(session.folder), session.manifest, f"{folder}/tokenizer.json")
        tokenizer = Tokenizer.from_file(str(path))
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        return np.asarray(ids, np.int64), "the artifact's tokenizer"
    if isinstance(vocab, int) and vocab >= 256:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64), "UTF-8 bytes"
    raise UserError(f"{session.folder} ships no tokenizer and its vocabulary ({vocab}) cannot "
                    "hold byte tokens")
