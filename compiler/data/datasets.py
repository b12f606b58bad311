"""Offline, deterministic evaluation data.

Text corpora (`--data text:NAME`):
    pydoc    CPython's `pydoc_data.topics` (always present): sorted topic keys, texts joined
             by blank lines
    jargon   the Jargon File 4.4.7 (Debian package `jargon-text`)
    kjv      the King James Bible (Debian packages `bible-kjv` and `bible-kjv-text`)
    PATH     any local UTF-8 text file
Debian packages are looked up under the asset root ($EMBER_ASSET_ROOT, else
<ember cache>/debian, where `make assets-text` extracts them) and then under `/`.

Digits (`--data digits`): the 1,000 MNIST-5k images the digits CNN never trained on (the last
100 of each class; compiler/data/mnist.py).
"""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
from pathlib import Path

from ember.cache import cache_dir
from ember.errors import UserError

INSTALL_TEXT = "run `make assets-text` (apt-get download + dpkg-deb -x, no root needed for the "\
    "extraction)"


def asset_root() -> Path:
    return Path(os.environ.get("EMBER_ASSET_ROOT") or cache_dir() / "debian")


def _find(relative: str) -> Path | None:
    for root in (asset_root(), Path("/")):
        if (root / relative).is_file():
            return root / relative
    return None


def pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def jargon_text() -> str:
    path = _find("usr/share/doc/jargon-text/jargon.txt.gz")
    if path is None:
        raise UserError(f"text:jargon needs the Debian package 'jargon-text'; {INSTALL_TEXT}")
    return gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")


def kjv_text() -> str:
    program, data = _find("usr/bin/bible"), _find("usr/lib/bible.data")
    if program is None or data is None:
        raise UserError("text:kjv needs the Debian packages 'bible-kjv' and 'bible-kjv-text'; "
                        f"{INSTALL_TEXT}")
    result = subprocess.run([str(program), "-p", str(data.parent), "gen1:1-rev22:21"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise UserError(f"text:kjv: {program} failed: {result.stderr.strip()[:200]}")
    return result.stdout


CORPORA = {"pydoc": pydoc_text, "jargon": jargon_text, "kjv": kjv_text}


@functools.lru_cache(maxsize=4)  # a bench reads the same corpus for every row
def text_corpus(name: str) -> str:
    """The named corpus, or a local file's text."""
    if name in CORPORA:
        return CORPORA[name]()
    path = Path(name).expanduser()
    if not path.is_file():
        raise UserError(f"text:{name}: not a known corpus ({', '.join(CORPORA)}) "
                        "and no such file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"text:{name}: cannot read as UTF-8 text ({type(exc).__name__})") from None
