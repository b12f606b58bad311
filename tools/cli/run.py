"""`ember run DIR [--input name=file.npy ...] [--check]`, and `--prompt TEXT` on generation
artifacts (tools/cli/prompt.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ember.tools.cli import prompt

NAME = "run"
HELP = "run an artifact on given inputs (or its reference inputs); --check compares"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input array (repeatable); default: the stored reference inputs")
    p.add_argument("--check", action="store_true",
                   help="run the reference inputs and compare with the stored torch outputs")
    p.add_argument("--save", metavar="DIR", help="write each output to DIR/NAME.npy")
    p.add_argument("--threads", type=int, help="engine threads (default: as compiled)")
    p.add_argument("--trust", metavar="KEY.pub",
                   help="require a valid signature by this Ed25519 public key (ember sign)")
    prompt.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    import ember.runtime as rt
    from ember.errors import InputError

    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise InputError("--threads must be 1..1024")
    session = rt.load(args.artifact, threads=args.threads, trusted_key=args.trust)
    if args.check and args.input:
        raise InputError("--check runs the stored reference inputs; do not combine with --input")
    if args.prompt is not None:
        if args.check or args.input or args.save:
            raise InputError("--prompt generates text; do not combine with --check, --input "
                             "or --save")
        return prompt.generate_text(session, args)
    inputs = _read_inputs(args.input) if args.input else session.reference_io()[0]
    outputs = session.run(inputs)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype}{list(value.shape)} {_preview(value)}")
    if args.save:
        _save(outputs, Path(args.save))
    return _check(session) if args.check else 0


def _read_inputs(items: list[str]) -> dict[str, np.ndarray]:
    from ember.errors import InputError
    from ember.runtime.arrays import load_npy

    inputs = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--input {item!r}: expected NAME=FILE.npy")
        try:
            inputs[name] = load_npy(file)
        except FileNotFoundError:
            raise InputError(f"--input {name}: file not found: {file}") from None
        except OSError as exc:
            raise InputError(f"--input {name}: cannot read {file} ({exc.strerror})") from None
        except ValueError as exc:
            raise InputError(f"--input {name}: {exc}") from None
    return inputs


def _preview(value: np.ndarray) -> str:
    flat = value.reshape(-1)
    head = ", ".join(f"{x:.4g}" for x in flat[:4])
    more = ", ..." if flat.size > 4 else ""
    extra = f" argmax(last axis)={value.argmax(-1).reshape(-1)[:8].tolist()}" if (
        value.ndim >= 1 and np.issubdtype(value.dtype, np.floating)) else ""
    return f"[{head}{more}]{extra}"


def _save(outputs: dict[str, np.ndarray], folder: Path) -> None:
    from ember.errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, value in outputs.items():
            np.save(folder / f"{name.replace('/', '_')}.npy", value)
    except OSError as exc:
        raise UserError(f"--save {folder}: {exc.strerror or exc}") from None


def _check(session) -> int:
    result = session.check()
    tol = result["tolerance"]
    for name, o in result["outputs"].items():
        if o.get("problem"):
            print(f"check {name}: {o['problem']} FAILED")
            continue
        status = "ok" if o["passed"] else "FAILED"
        print(f"check {name}: max abs error {o['max_abs']:.3g}, relative {o['max_rel']:.3g} "
              f"(atol={tol['atol']:g}, rtol={tol['rtol']:g}) {status}")
    return 0 if result["status"] == "passed" else 1
