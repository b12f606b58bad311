"""Progress for long work: a bar on a terminal, silence in logs.

`Progress.stage(name)` wraps one step; on a terminal it shows the step and its elapsed time,
elsewhere it prints nothing unless `verbose` is set. Steps and their durations are kept so the
caller can report them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Progress:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    verbose: bool | None = None  # None: only on a terminal
    timings: list[tuple[str, float]] = field(default_factory=list)
    _open_line: bool = field(default=False, repr=False)  # a stage line awaits its time

    @property
    def enabled(self) -> bool:
        if self.verbose is not None:
            return self.verbose
        return bool(getattr(self.stream, "isatty", lambda: False)())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._write(f"  {name} ...", opens=True)
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.timings.append((name, seconds))
            # a nested stage closed our line: repeat the name with the time
            self._write(f" {seconds:.1f}s\n" if self._open_line else f"  {name}: {seconds:.1f}s\n")

    def _write(self, text: str, opens: bool = False) -> None:
        if not self.enabled:
            return
        if opens and self._open_line:
            self.stream.write("\n")
        self.stream.write(text)
        self.stream.flush()
        self._open_line = opens

    def warn(self, message: str) -> None:
        """A one-line warning that matters to the user (e.g. a declined pass): always shown."""
        self.stream.write(f"ember: warning: {message}\n")
        self.stream.flush()

    def bar(self, total: int, desc: str):  # -> tqdm-like
        """A per-item bar for loops (training epochs, benchmark repeats)."""
        from tqdm import tqdm

        return tqdm(total=total, desc=f"  {desc}", file=self.stream, disable=not self.enabled,
                    leave=False)


QUIET = Progress(verbose=False)
