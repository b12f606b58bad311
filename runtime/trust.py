"""Detached signatures: trusting an artifact that was built elsewhere.

`artifact.sha256` binds the manifest, and the manifest binds every payload by its sha256, so
one Ed25519 signature over `artifact.sha256` covers the whole artifact. `artifact.sig`
holds that signature and the signing key's fingerprint (SHA256 of the OpenSSH public key
blob, base64: what `ssh-keygen -l` prints for the same key). The signed message is DOMAIN
followed by the bytes of `artifact.sha256`, so the signature cannot be replayed as one over
some other document.
Ed25519 signatures are deterministic: the same artifact and key give the same bytes.

Keys are Ed25519, read as PEM (`openssl genpkey -algorithm ed25519`) or OpenSSH
(`ssh-keygen -t ed25519`) files; unencrypted private keys only. This needs the optional
package `cryptography` (`pip install 'ember[sign]'`); nothing else in the runtime does.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from ember.errors import ArtifactError, UserError
from ember.runtime.manifest import DIGEST

SIGNATURE = "artifact.sig"
DOMAIN = b"ember-artifact-signature-v1\n"
HEADER = "ember-signature v1 ed25519"


def signed_message(folder: Path) -> bytes:
    try:
        return DOMAIN + (folder / DIGEST).read_bytes()
    except OSError:
        raise ArtifactError(f"{folder}: {DIGEST} is missing or unreadable") from None


def fingerprint(public_key: Any) -> str:
    """`SHA256:<base64>` of the key's OpenSSH blob, as `ssh-keygen -l` prints it."""
    from cryptography.hazmat.primitives import serialization

    line = public_key.public_bytes(serialization.Encoding.OpenSSH,
                                   serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def signature_text(key_fingerprint: str, signature: bytes) -> str:
    return f"{HEADER}\nkey {key_fingerprint}\nsignature {base64.b64encode(signature).decode()}\n"


def read_signature(folder: Path) -> tuple[str, bytes]:
    """(the signing key's fingerprint, the signature) from `artifact.sig`."""
    path = folder / SIGNATURE
    if not path.is_file():
        raise ArtifactError(f"{folder}: the artifact is not signed ({SIGNATURE} is missing), "
                            "and a trusted key was asked for; refusing to load")
    try:
        header, key, signature = path.read_text().splitlines()[:3]
        if header != HEADER or not key.startswith("key ") or not signature.startswith(
                "signature "):
            raise ValueError
        return key.removeprefix("key "), base64.b64decode(signature.removeprefix("signature "),
                                                          validate=True)
    except (ValueError, UnicodeDecodeError, OSError):
        raise ArtifactError(f"{folder}: {SIGNATURE} is malformed; refusing to load") from None


def check_signature(folder: str | Path, trusted_key: str | Path) -> str:
    """The artifact's signature is valid under `trusted_key` (a public key file); returns
    the key's fingerprint. Run after the hash checks: the signature covers the digest only."""
    folder = Path(folder)
    public = load_public_key(trusted_key)  # first: it says when cryptography is missing
    from cryptography.exceptions import InvalidSignature

    trusted = fingerprint(public)
    signer, signature = read_signature(folder)
    if signer != trusted:
        raise ArtifactError(f"{folder}: signed by key {signer}, not by the trusted key "
                            f"{trusted}; refusing to load")
    try:
        public.verify(signature, signed_message(folder))
    except InvalidSignature:
        raise ArtifactError(f"{folder}: the signature does not match: the artifact was changed "
                            "after it was signed; refusing to load") from None
    return trusted


def load_public_key(path: str | Path) -> Any:
    """An Ed25519 public key from a PEM or OpenSSH (`ssh-ed25519 ...`) file."""
    serialization = require_cryptography()
    data = _read_key_file(path)
    if b"PRIVATE KEY-----" in data:
        raise UserError(f"key {path} is a private key: trust the public key (its .pub)")
    loaders = (serialization.load_ssh_public_key, serialization.load_pem_public_key)
    return _ed25519(path, _first_that_loads(path, data, loaders), public=True)


def load_private_key(path: str | Path) -> Any:
    """An unencrypted Ed25519 private key from a PEM or OpenSSH file."""
    serialization = require_cryptography()
    data = _read_key_file(path)
    if data.startswith((b"ssh-", b"-----BEGIN PUBLIC KEY")):
        raise UserError(f"key {path} is a public key: signing needs the private key")
    loaders = (lambda d: serialization.load_pem_private_key(d, password=None),
               lambda d: serialization.load_ssh_private_key(d, password=None))
    return _ed25519(path, _first_that_loads(path, data, loaders), public=False)


def _first_that_loads(path: str | Path, data: bytes, loaders) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm

    for load in loaders:
        try:
            return load(data)
        except TypeError:  # cryptography's answer to an encrypted key without a password
            raise UserError(f"key {path} is encrypted: ember reads unencrypted keys only") \
                from None
        except (ValueError, UnicodeDecodeError, UnsupportedAlgorithm):  # the other format's
            continue
    raise UserError(f"key {path} is not a PEM or OpenSSH key file")


def _ed25519(path: str | Path, key: Any, public: bool) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    kind = ed25519.Ed25519PublicKey if public else ed25519.Ed25519PrivateKey
    if not isinstance(key, kind):
        raise UserError(f"key {path} is not an Ed25519 {'public' if public else 'private'} "
                        f"key ({type(key).__name__.removeprefix('_')})")
    return key


def _read_key_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"key file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read key file {path}: {exc.strerror}") from None


def require_cryptography() -> Any:
    """cryptography's serialization module, or a UserError saying how to install it."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise UserError("signatures need the optional package cryptography: "
                        "pip install 'ember[sign]'") from None
    return serialization
