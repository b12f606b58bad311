"""`ember run DIR --prompt TEXT`: text in, generated text streamed out, through the
artifact's own tokenizer (and its chat template with --chat).

Text is printed as it is decoded: after each new token the whole continuation is decoded
again and only the new characters are printed, so tokens that split a UTF-8 character, or
that a tokenizer merges with the next one, print correctly once complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", metavar="TEXT",
                   help="generation artifacts: generate a continuation of TEXT and print it")
    p.add_argument("--chat", action="store_true",
                   help="with --prompt: wrap TEXT as a user turn in the tokenizer's chat template")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N",
                   help="with --prompt: new tokens at most (default 64)")
    p.add_argument("--sample", action="store_true",
                   help="with --prompt: sample instead of greedy (see --temperature, --top-k, "
                        "--top-p, --seed)")
    p.add_argument("--temperature", type=float, default=1.0, help="with --sample")
    p.add_argument("--top-k", type=int, default=0, help="with --sample (0: no limit)")
    p.add_argument("--top-p", type=float, default=1.0, help="with --sample")
    p.add_argument("--seed", type=int, help="with --sample: seed of the draws")


def generate_text(session: Any, args: argparse.Namespace) -> int:
    tokenizer = artifact_tokenizer(session)
    prompt = _prompt_ids(tokenizer, args.prompt, args.chat)
    stream = session.stream(prompt, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            seed=args.seed)
    new: list[int] = []
    shown = ""
    for token in stream:
        new.append(token)
        text = tokenizer.decode(new, skip_special_tokens=True)
        if text.startswith(shown) and not text.endswith("\ufffd"):  # a whole character
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text
    final = tokenizer.decode(new, skip_special_tokens=True)
    sys.stdout.write(final[len(shown):] if final.startswith(shown) else "\n" + final)
    sys.stdout.write("\n")
    return 0


def artifact_tokenizer(session: Any) -> Any:
    """The tokenizer shipped in the artifact (its hash-checked files), via transformers."""
    from ember.errors import InputError
    from ember.runtime.manifest import payload_path

    folder = session.manifest.get("tokenizer")
    if not folder:
        raise InputError(f"{session.folder} ships no tokenizer: give token ids with "
                         "--input input_ids=FILE.npy, or use the Python API's generate")
    from transformers import AutoTokenizer

    config = payload_path(Path(session.folder), session.manifest,
                          f"{folder}/tokenizer_config.json")
    return AutoTokenizer.from_pretrained(config.parent, local_files_only=True)


def _prompt_ids(tokenizer: Any, text: str, chat: bool) -> list[int]:
    from ember.errors import InputError

    if not chat:
        ids = tokenizer(text)["input_ids"]
    elif not getattr(tokenizer, "chat_template", None):
        raise InputError("--chat: the artifact's tokenizer has no chat template")
    else:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                            add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    if not ids:
        raise InputError("--prompt: the text gives no tokens")
    return list(ids)
