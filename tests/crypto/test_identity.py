"""Party identities: key generation, key files, fingerprints (``confide.crypto._identity``)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from confide._errors import KeyFileError
from confide.crypto import PartyIdentity, PublicParty, Role, fingerprint, write_private_file

# RFC 8032 section 7.1, TEST 1 (Ed25519) and RFC 7748 section 6.1, Alice (X25519).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
RFC7748_SECRET = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
# sha256(b"confide-fp-v1" + RFC8032_PUBLIC + RFC7748_PUBLIC): pins the fingerprint format,
# which people compare out of band, so it must never change silently.
KNOWN_FINGERPRINT = "dee6f659fc963e366bf7b5d1b531097b73a475be362e6380b0de12974a895eab"


def _known_identity() -> PartyIdentity:
    return PartyIdentity(
        "node-a",
        "org-a",
        Role.NODE,
        ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET),
        x25519.X25519PrivateKey.from_private_bytes(RFC7748_SECRET),
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- known answers ---------------------------------------------------------------------------


def test_public_half_of_known_keys_matches_the_rfc_vectors() -> None:
    identity = _known_identity()

    public = identity.public

    assert public == PublicParty("node-a", "org-a", Role.NODE, RFC8032_PUBLIC, RFC7748_PUBLIC)


def test_sign_matches_rfc8032_test_1() -> None:
    identity = _known_identity()

    signature = identity.sign(b"")

    assert signature == RFC8032_SIG_EMPTY


def test_fingerprint_known_answer() -> None:
    fp = fingerprint(RFC8032_PUBLIC, RFC7748_PUBLIC)

    assert fp == KNOWN_FINGERPRINT
    assert fp == hashlib.sha256(b"confide-fp-v1" + RFC8032_PUBLIC + RFC7748_PUBLIC).hexdigest()
    assert _known_identity().public.fingerprint == KNOWN_FINGERPRINT


# -- generation and fingerprints -------------------------------------------------------------


def test_generate_gives_fresh_keys_with_the_given_facts() -> None:
    first = PartyIdentity.generate("alice", "org-a", Role.RESEARCHER)
    second = PartyIdentity.generate("alice", "org-a", Role.RESEARCHER)

    assert (first.party_id, first.organisation, first.role) == ("alice", "org-a", Role.RESEARCHER)
    assert len(first.public.verify_key) == 32
    assert len(first.public.seal_key) == 32
    assert first.public.verify_key != second.public.verify_key
    assert first.public.seal_key != second.public.seal_key


def test_fingerprint_is_stable_and_differs_between_parties() -> None:
    alice = PartyIdentity.generate("alice", "org-a", Role.RESEARCHER)
    bob = PartyIdentity.generate("bob", "org-a", Role.RESEARCHER)

    fp_once, fp_twice = alice.public.fingerprint, alice.public.fingerprint

    assert fp_once == fp_twice
    assert len(fp_once) == 64
    assert all(c in "0123456789abcdef" for c in fp_once)
    assert fp_once != bob.public.fingerprint


def test_fingerprint_depends_on_both_keys() -> None:
    verify_key, seal_key = b"\x01" * 32, b"\x02" * 32

    base = fingerprint(verify_key, seal_key)

    assert fingerprint(b"\x03" * 32, seal_key) != base
    assert fingerprint(verify_key, b"\x03" * 32) != base


def test_public_party_gives_working_cryptography_keys() -> None:
    identity = PartyIdentity.generate("node-a", "org-a", Role.NODE)

    public = identity.public

    public.ed25519().verify(identity.sign(b"data"), b"data")  # raises if wrong
    raw = public.x25519().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == public.seal_key


# -- key files --------------------------------------------------------------------------------


def test_save_then_load_gives_the_same_identity(tmp_path: Path) -> None:
    identity = PartyIdentity.generate("node-a", "org-a", Role.NODE)

    identity.save(tmp_path / "kit")
    loaded = PartyIdentity.load(tmp_path / "kit", "node-a", "org-a", Role.NODE)

    assert loaded.public == identity.public
    assert loaded.public.fingerprint == identity.public.fingerprint
    identity.public.ed25519().verify(loaded.sign(b"m"), b"m")


def test_saved_key_files_are_private(tmp_path: Path) -> None:
    identity = PartyIdentity.generate("node-a", "org-a", Role.NODE)

    identity.save(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["sealing.key", "signing.key"]
    assert _mode(tmp_path / "signing.key") == 0o600
    assert _mode(tmp_path / "sealing.key") == 0o600


def test_save_overwrites_an_existing_key_file_and_makes_it_private(tmp_path: Path) -> None:
    (tmp_path / "signing.key").write_bytes(b"old")
    (tmp_path / "signing.key").chmod(0o644)
    identity = PartyIdentity.generate("node-a", "org-a", Role.NODE)

    identity.save(tmp_path)

    assert _mode(tmp_path / "signing.key") == 0o600
    assert PartyIdentity.load(tmp_path, "node-a", "org-a", Role.NODE).public == identity.public


def test_write_private_file_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"

    write_private_file(target, b"payload")

    assert target.read_bytes() == b"payload"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


@pytest.mark.parametrize("missing", ["signing.key", "sealing.key"])
def test_load_missing_key_file_names_the_path(tmp_path: Path, missing: str) -> None:
    PartyIdentity.generate("node-a", "org-a", Role.NODE).save(tmp_path)
    (tmp_path / missing).unlink()

    with pytest.raises(KeyFileError, match="cannot read key file") as info:
        PartyIdentity.load(tmp_path, "node-a", "org-a", Role.NODE)

    assert str(tmp_path / missing) in str(info.value)


@pytest.mark.parametrize("garbage", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_load_garbage_key_file_names_the_path(tmp_path: Path, garbage: bytes) -> None:
    PartyIdentity.generate("node-a", "org-a", Role.NODE).save(tmp_path)
    (tmp_path / "sealing.key").write_bytes(garbage)

    with pytest.raises(KeyFileError, match="is not a PEM private key") as info:
        PartyIdentity.load(tmp_path, "node-a", "org-a", Role.NODE)

    assert str(tmp_path / "sealing.key") in str(info.value)


def test_load_keys_of_the_wrong_type_names_the_file(tmp_path: Path) -> None:
    PartyIdentity.generate("node-a", "org-a", Role.NODE).save(tmp_path)
    signing_pem = (tmp_path / "signing.key").read_bytes()
    sealing_pem = (tmp_path / "sealing.key").read_bytes()
    (tmp_path / "signing.key").write_bytes(sealing_pem)
    (tmp_path / "sealing.key").write_bytes(signing_pem)

    with pytest.raises(KeyFileError, match="not an Ed25519 private key") as info:
        PartyIdentity.load(tmp_path, "node-a", "org-a", Role.NODE)

    assert str(tmp_path / "signing.key") in str(info.value)


def test_load_sealing_key_of_the_wrong_type_names_the_file(tmp_path: Path) -> None:
    PartyIdentity.generate("node-a", "org-a", Role.NODE).save(tmp_path)
    (tmp_path / "sealing.key").write_bytes((tmp_path / "signing.key").read_bytes())

    with pytest.raises(KeyFileError, match="not an X25519 private key") as info:
        PartyIdentity.load(tmp_path, "node-a", "org-a", Role.NODE)

    assert str(tmp_path / "sealing.key") in str(info.value)
