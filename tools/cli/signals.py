"""SIGINT and SIGTERM honoured even while the main thread is inside long native work.

Python runs its signal handlers only between bytecodes of the main thread, so a Ctrl-C or a
`kill` that arrives during one long native call (an ONNX Runtime run, a large matmul, a TVM
build) would wait until that call returns: minutes, for a large enough input. Both signals
raise KeyboardInterrupt as usual, so the normal path unwinds and cleans up; in addition, the
C-level handler writes the signal number to a wakeup pipe (`signal.set_wakeup_fd`), and a
watcher thread reading it wakes at once. If the process has not exited GRACE_SECONDS later,
the watcher removes the artifact temporaries this process is writing and exits with 130,
printing the one line the normal path would have printed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 3.0
INTERRUPTED_EXIT = 130
_installed = False


def install() -> None:
    """From the main thread, before any long work; once per process (later calls return)."""
    global _installed
    if _installed:
        return
    _installed = True
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed compile cleans up like Ctrl-C
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_end,), name="ember-signal-watch",
                     daemon=True).start()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _watch(read_end: int) -> None:
    while True:
        received = os.read(read_end, 64)
        if not received:
            return
        if signal.SIGINT in received or signal.SIGTERM in received:
            time.sleep(GRACE_SECONDS)  # the main thread's own unwinding comes first
            _exit_now()


def _exit_now() -> None:
    from ember.compiler.artifact import abandon_writes

    abandon_writes()
    print("ember: interrupted", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED_EXIT)
