"""`ember sign DIR --key KEY` and `ember sign --new-key KEY`: detached Ed25519 signatures.

Signing writes `DIR/artifact.sig` over the artifact's digest (runtime/trust.py), after
checking every file against it: a signature vouches for what the manifest says, so an
artifact whose files no longer match is refused. `--new-key KEY` writes an unencrypted
private key (PEM, mode 0600) and `KEY.pub` (OpenSSH, one line) to give to whoever loads the
artifact: `ember run DIR --trust KEY.pub`, `ember inspect DIR --trust KEY.pub`, or
`ember.runtime.load(DIR, trusted_key="KEY.pub")`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

NAME = "sign"
HELP = "sign an artifact with an Ed25519 key (or make a key pair with --new-key)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", nargs="?", help="artifact directory to sign")
    p.add_argument("--key", metavar="FILE", help="Ed25519 private key (PEM or OpenSSH)")
    p.add_argument("--new-key", metavar="FILE",
                   help="write a new private key to FILE and its public key to FILE.pub")


def run(args: argparse.Namespace) -> int:
    from ember.errors import UserError

    if args.new_key:
        if args.artifact or args.key:
            raise UserError("--new-key makes a key pair only; sign with --key afterwards")
        public = new_key_pair(Path(args.new_key))
        print(f"wrote {args.new_key} (private: keep it) and {public} (give it out)")
        return 0
    if not args.artifact or not args.key:
        raise UserError("usage: ember sign DIR --key PRIVATE_KEY (or --new-key FILE)")
    print(f"signed {args.artifact} with key {sign_artifact(Path(args.artifact), args.key)}")
    return 0


def sign_artifact(folder: Path, key_file: str | Path) -> str:
    """Write `folder/artifact.sig`; returns the key's fingerprint."""
    from ember.runtime.manifest import check_files, read_manifest
    from ember.runtime.trust import (
        SIGNATURE,
        fingerprint,
        load_private_key,
        signature_text,
        signed_message,
    )

    key = load_private_key(key_file)
    check_files(folder, read_manifest(folder))  # vouch only for an intact artifact
    signer = fingerprint(key.public_key())
    text = signature_text(signer, key.sign(signed_message(folder)))
    _write_atomically(folder / SIGNATURE, text.encode())
    return signer


def new_key_pair(private_path: Path) -> Path:
    from ember.errors import UserError
    from ember.runtime.trust import require_cryptography

    require_cryptography()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise UserError(f"{path} exists: ember does not overwrite keys")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(private)
        public_path.write_bytes(public + b" ember\n")
    except OSError as exc:
        raise UserError(f"cannot write {private_path}: {exc.strerror or exc}") from None
    return public_path


def _write_atomically(path: Path, data: bytes) -> None:
    from ember.errors import UserError

    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
