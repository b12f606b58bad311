"""Detached signatures (ember sign, --trust, runtime.load(trusted_key=)): a signed artifact
loads under its key and under no other; any change after signing, even one that a forger
covers by recomputing the digest, is refused; keys of the wrong kind say so."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytest.importorskip("cryptography", reason="signatures need the optional package cryptography")

import ember.runtime as rt  # noqa: E402
from ember.errors import ArtifactError, UserError  # noqa: E402
from ember.runtime.manifest import DIGEST, MANIFEST, digest_line  # noqa: E402
from ember.tools.cli.main import main  # noqa: E402


def _ember(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def signed(tiny_cnn_cpu, tmp_path, capsys):
    """A copy of the tiny CNN artifact, signed with a fresh key: (artifact, key, key.pub)."""
    folder = tmp_path / "artifact"
    shutil.copytree(tiny_cnn_cpu, folder)
    key = tmp_path / "team"
    assert _ember(capsys, "sign", "--new-key", str(key))[0] == 0
    code, out, _ = _ember(capsys, "sign", str(folder), "--key", str(key))
    assert code == 0 and out.startswith(f"signed {folder} with key SHA256:")
    return folder, key, tmp_path / "team.pub"


def test_a_signed_artifact_loads_under_its_key_only(signed, tmp_path, capsys):
    folder, _, public = signed
    assert rt.load(folder, trusted_key=public).check()["status"] == "passed"
    code, out, _ = _ember(capsys, "inspect", str(folder), "--trust", str(public))
    assert code == 0 and "signature valid, by the trusted key SHA256:" in out
    _ember(capsys, "sign", "--new-key", str(tmp_path / "stranger"))
    code, _, err = _ember(capsys, "run", str(folder), "--trust", str(tmp_path / "stranger.pub"))
    assert code == 2 and "not by the trusted key" in err and len(err.splitlines()) == 1


def test_an_unsigned_artifact_is_refused_when_a_key_is_trusted(tiny_cnn_cpu, signed):
    _, _, public = signed
    with pytest.raises(ArtifactError, match="the artifact is not signed"):
        rt.load(tiny_cnn_cpu, trusted_key=public)


def test_a_forged_manifest_with_a_recomputed_digest_breaks_the_signature(signed):
    """Without a key, editing verify.atol and recomputing artifact.sha256 goes unnoticed by
    the hash checks (they are content checks, not trust); the signature catches it."""
    folder, _, public = signed
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["verification"]["tolerance"]["atol"] = 9e5
    (folder / MANIFEST).write_text(json.dumps(manifest))
    (folder / DIGEST).write_text(digest_line(folder))
    rt.load(folder)  # consistent content: loads without a trusted key
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        rt.load(folder, trusted_key=public)


def test_signing_is_deterministic_and_refuses_a_tampered_artifact(signed, capsys):
    folder, key, _ = signed
    first = (folder / "artifact.sig").read_bytes()
    assert _ember(capsys, "sign", str(folder), "--key", str(key))[0] == 0
    assert (folder / "artifact.sig").read_bytes() == first  # Ed25519 is deterministic
    (folder / "ops.json").write_text("{}")
    code, _, err = _ember(capsys, "sign", str(folder), "--key", str(key))
    assert code == 2 and "sha256 checksum mismatch for ops.json" in err


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_openssh_keys_work_and_the_fingerprint_is_ssh_keygens(tiny_cnn_cpu, tmp_path, capsys):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
    folder = tmp_path / "artifact"
    shutil.copytree(tiny_cnn_cpu, folder)
    code, out, _ = _ember(capsys, "sign", str(folder), "--key", str(key))
    assert code == 0 and out.strip().endswith(listed)
    rt.load(folder, trusted_key=f"{key}.pub")


@pytest.mark.parametrize("content, role, message", [
    (None, "trust", "key file not found"),
    (b"not a key\n", "trust", "is not a PEM or OpenSSH key file"),
    ("private", "trust", "is a private key: trust the public key"),
    ("public", "sign", "is a public key: signing needs the private key"),
])
def test_wrong_keys_are_one_line_errors(signed, tmp_path, content, role, message):
    folder, key, public = signed
    path = {"private": key, "public": public}.get(content, tmp_path / "given")
    if isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        if role == "trust":
            rt.load(folder, trusted_key=path)
        else:
            from ember.tools.cli.sign import sign_artifact

            sign_artifact(folder, path)


def test_new_key_never_overwrites(signed, capsys):
    _, key, _ = signed
    code, _, err = _ember(capsys, "sign", "--new-key", str(key))
    assert code == 2 and "does not overwrite keys" in err


def test_pem_keys_as_openssl_writes_them_sign_and_verify(tiny_cnn_cpu, tmp_path):
    """PKCS#8 private and SubjectPublicKeyInfo public PEM files (`openssl genpkey -algorithm
    ed25519`, `openssl pkey -pubout`): a PEM public key once ended in an internal error
    (the OpenSSH loader, tried first, raises UnsupportedAlgorithm on PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from ember.tools.cli.sign import sign_artifact

    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    folder = tmp_path / "artifact"
    shutil.copytree(tiny_cnn_cpu, folder)
    signer = sign_artifact(folder, tmp_path / "key.pem")
    assert rt.load(folder, trusted_key=tmp_path / "pub.pem") is not None
    assert signer.startswith("SHA256:")
    with pytest.raises(UserError, match="is a private key"):
        rt.load(folder, trusted_key=tmp_path / "key.pem")
