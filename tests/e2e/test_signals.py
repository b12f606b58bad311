"""Signals during long native work: a SIGTERM that arrives while the main thread is inside
one 19-second matmul (Python runs its handlers only between bytecodes) still ends the
compile within seconds, with one line, exit 130 and nothing at the output path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ember.compiler.artifact import ArtifactWriter, abandon_writes
from ember.tools.cli.signals import GRACE_SECONDS

_ONE_LONG_MATMUL = '''
import os, pathlib, torch
class OneLongMatmul(torch.nn.Module):
    def forward(self, x):
        pathlib.Path(os.environ["EMBER_TEST_MARK"]).touch()  # the native call starts now
        a = x.reshape(-1, 1).expand(12000, 12000)
        return (a @ a)[:1, :4]  # one call of 3.5 TFLOP: about 19 s on 2 cores
def make():
    return OneLongMatmul()
'''


def test_sigterm_inside_a_long_native_call_ends_the_compile_promptly(tmp_path):
    (tmp_path / "long_matmul.py").write_text(_ONE_LONG_MATMUL)
    mark, out = tmp_path / "started", tmp_path / "out"
    env = {**os.environ, "EMBER_TEST_MARK": str(mark), "PYTHONPATH": str(tmp_path)}
    ember = Path(sys.executable).with_name("ember")
    process = subprocess.Popen(
        [str(ember), "compile", "--model", "torch:long_matmul:make", "--shape", "12000",
         "-o", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark.exists(), process.communicate()[1]
        time.sleep(0.5)  # well inside the matmul
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip() == "ember: interrupted"
    assert waited < GRACE_SECONDS + 4, f"took {waited:.1f} s after SIGTERM"
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_abandoned_writes_leave_nothing(tmp_path):
    """What the signal watcher does before it exits without unwinding (so the writer's
    __exit__ never runs)."""
    folder = ArtifactWriter(tmp_path / "out").__enter__()
    (folder / "model.onnx").write_bytes(b"partial")
    abandon_writes()
    assert list(tmp_path.iterdir()) == []
