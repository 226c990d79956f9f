"""The consortium CA and party certificates (``confide.crypto._pki``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from confide._errors import CertificateError, KeyFileError, TamperedError
from confide.crypto import (
    CertificateAuthority,
    MemoryReplayGuard,
    PartyIdentity,
    PublicParty,
    Role,
    _pki,
    certificate_pem,
    load_certificate,
    open_sealed,
    seal,
    verify_party_certificate,
)
from confide.crypto._pki import SEAL_KEY_OID


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("acme")


@pytest.fixture(scope="module")
def node_a() -> PartyIdentity:
    return PartyIdentity.generate("node-a", "org-a", Role.NODE)


@pytest.fixture(scope="module")
def node_b() -> PartyIdentity:
    return PartyIdentity.generate("node-b", "org-b", Role.NODE)


@pytest.fixture(scope="module")
def alice() -> PartyIdentity:
    return PartyIdentity.generate("alice", "org-r", Role.RESEARCHER)


def _party_cert(
    ca: CertificateAuthority,
    *,
    cn: str = "node-a",
    ou: str | None = "node",
    seal_key: bytes | None = b"\x07" * 32,
    subject_key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | None = None,
    days: int = 30,
) -> bytes:
    """Build a certificate the way ``issue`` does, but with chosen flaws, signed by ``ca``."""
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org-a"),
    ]
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.certificate.subject)
        .public_key(subject_key or ed25519.Ed25519PrivateKey.generate().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if seal_key is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(SEAL_KEY_OID, seal_key), critical=False)
    return certificate_pem(builder.sign(ca.key, None))


# -- the CA -----------------------------------------------------------------------------------


def test_created_ca_is_a_self_signed_ed25519_ca(ca: CertificateAuthority) -> None:
    cert = ca.certificate

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme consortium CA"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    assert constraints.ca is True
    assert usage.key_cert_sign is True
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    ca.key.public_key().verify(cert.signature, cert.tbs_certificate_bytes)


def test_ca_save_then_load_roundtrips(
    tmp_path: Path, ca: CertificateAuthority, node_a: PartyIdentity
) -> None:
    ca.save(tmp_path / "ca")

    loaded = CertificateAuthority.load(tmp_path / "ca")

    assert loaded.certificate == ca.certificate
    assert loaded.certificate_pem == ca.certificate_pem
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    # The loaded CA signs certificates that the original CA certificate accepts.
    assert verify_party_certificate(loaded.issue(node_a.public), ca.certificate) == node_a.public


def test_ca_load_from_missing_directory_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot load the CA key") as info:
        CertificateAuthority.load(tmp_path / "nowhere")

    assert str(tmp_path / "nowhere" / "ca.key") in str(info.value)


def test_ca_load_refuses_a_key_of_another_type(tmp_path: Path, ca: CertificateAuthority) -> None:
    ca.save(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(KeyFileError, match="is not an Ed25519 key"):
        CertificateAuthority.load(tmp_path)


def test_ca_load_with_garbage_certificate_is_a_certificate_error(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    ca.save(tmp_path)
    (tmp_path / "ca.crt").write_bytes(b"garbage")

    with pytest.raises(CertificateError, match=r"ca\.crt does not hold a PEM certificate"):
        CertificateAuthority.load(tmp_path)


def test_ca_load_with_missing_certificate_is_a_key_file_error(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    ca.save(tmp_path)
    (tmp_path / "ca.crt").unlink()

    with pytest.raises(KeyFileError, match="cannot read the CA certificate") as info:
        CertificateAuthority.load(tmp_path)

    assert str(tmp_path / "ca.crt") in str(info.value)


# -- party certificates -----------------------------------------------------------------------


def test_issued_certificate_verifies_to_the_party(ca: CertificateAuthority, node_a: PartyIdentity) -> None:
    pem = ca.issue(node_a.public)

    party = verify_party_certificate(pem, ca.certificate, expected_id="node-a", expected_role=Role.NODE)

    assert party == node_a.public
    assert isinstance(party, PublicParty)
    assert party.fingerprint == node_a.public.fingerprint


def test_issued_certificate_names_the_party_and_is_not_a_ca(
    ca: CertificateAuthority, alice: PartyIdentity
) -> None:
    cert = load_certificate(ca.issue(alice.public), "test")

    subject = {a.oid: a.value for a in cert.subject}
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert subject == {
        NameOID.COMMON_NAME: "alice",
        NameOID.ORGANIZATION_NAME: "org-r",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "researcher",
    }
    assert cert.issuer == ca.certificate.subject
    assert constraints.ca is False
    seal_ext = cert.extensions.get_extension_for_oid(SEAL_KEY_OID).value
    assert isinstance(seal_ext, x509.UnrecognizedExtension)
    assert seal_ext.value == alice.public.seal_key


def test_verification_without_expectations_returns_the_certified_party(
    ca: CertificateAuthority, alice: PartyIdentity
) -> None:
    party = verify_party_certificate(ca.issue(alice.public), ca.certificate)

    assert party == alice.public
    assert party.role is Role.RESEARCHER


def test_certificate_from_a_different_ca_is_refused(ca: CertificateAuthority, node_a: PartyIdentity) -> None:
    other = CertificateAuthority.create("other-consortium")

    with pytest.raises(CertificateError, match="'node-a' was not issued by the consortium CA"):
        verify_party_certificate(other.issue(node_a.public), ca.certificate, expected_id="node-a")


def test_certificate_from_a_lookalike_ca_is_refused(ca: CertificateAuthority, node_a: PartyIdentity) -> None:
    lookalike = CertificateAuthority.create("acme")  # same name, different key

    with pytest.raises(CertificateError, match="does not verify against the consortium CA"):
        verify_party_certificate(lookalike.issue(node_a.public), ca.certificate, expected_id="node-a")


def test_certificate_for_another_party_is_refused(
    ca: CertificateAuthority, node_a: PartyIdentity, node_b: PartyIdentity
) -> None:
    pem_b = ca.issue(node_b.public)

    with pytest.raises(
        CertificateError, match="expected a certificate for 'node-a' but got one for 'node-b'"
    ):
        verify_party_certificate(pem_b, ca.certificate, expected_id="node-a")


def test_certificate_with_the_wrong_role_is_refused(ca: CertificateAuthority, alice: PartyIdentity) -> None:
    pem = ca.issue(alice.public)

    with pytest.raises(CertificateError, match="'alice' is certified as a researcher, not a node"):
        verify_party_certificate(pem, ca.certificate, expected_id="alice", expected_role=Role.NODE)


def test_garbage_certificate_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateError, match="certificate of node-a does not hold a PEM certificate"):
        verify_party_certificate(b"-----BEGIN CERTIFICATE-----\nxx\n", ca.certificate, expected_id="node-a")


def test_ca_certificate_presented_as_a_party_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateError):
        verify_party_certificate(ca.certificate_pem, ca.certificate)


def test_expired_certificate_is_refused(
    ca: CertificateAuthority, node_a: PartyIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = ca.issue(node_a.public)
    in_ten_years = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    monkeypatch.setattr(_pki, "_now", lambda: in_ten_years)

    with pytest.raises(CertificateError, match="expired or not yet valid"):
        verify_party_certificate(pem, ca.certificate, expected_id="node-a")


def test_not_yet_valid_certificate_is_refused(
    ca: CertificateAuthority, node_a: PartyIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = ca.issue(node_a.public)
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    monkeypatch.setattr(_pki, "_now", lambda: an_hour_ago)

    with pytest.raises(CertificateError, match="expired or not yet valid"):
        verify_party_certificate(pem, ca.certificate, expected_id="node-a")


def test_certificate_with_an_unknown_role_is_refused(ca: CertificateAuthority) -> None:
    pem = _party_cert(ca, ou="admin")

    with pytest.raises(CertificateError, match="unknown role 'admin'"):
        verify_party_certificate(pem, ca.certificate)


def test_certificate_without_a_role_is_refused(ca: CertificateAuthority) -> None:
    pem = _party_cert(ca, ou=None)

    with pytest.raises(CertificateError, match="lacks"):
        verify_party_certificate(pem, ca.certificate)


def test_certificate_without_a_sealing_key_is_refused(ca: CertificateAuthority) -> None:
    pem = _party_cert(ca, seal_key=None)

    with pytest.raises(CertificateError, match="carries no sealing key"):
        verify_party_certificate(pem, ca.certificate, expected_id="node-a")


def test_certificate_with_a_malformed_sealing_key_is_refused(ca: CertificateAuthority) -> None:
    pem = _party_cert(ca, seal_key=b"\x01" * 31)

    with pytest.raises(CertificateError, match="malformed sealing key"):
        verify_party_certificate(pem, ca.certificate, expected_id="node-a")


def test_certificate_with_a_non_ed25519_key_is_refused(ca: CertificateAuthority) -> None:
    pem = _party_cert(ca, subject_key=ec.generate_private_key(ec.SECP256R1()).public_key())

    with pytest.raises(CertificateError, match="does not hold an Ed25519 key"):
        verify_party_certificate(pem, ca.certificate, expected_id="node-a")


def test_sealing_key_swapped_inside_a_genuine_certificate_is_refused(
    ca: CertificateAuthority, node_a: PartyIdentity
) -> None:
    attacker = PartyIdentity.generate("node-a", "org-a", Role.NODE)
    cert = load_certificate(ca.issue(node_a.public), "test")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(node_a.public.seal_key) == 1
    forged_der = der.replace(node_a.public.seal_key, attacker.public.seal_key)
    forged_pem = certificate_pem(x509.load_der_x509_certificate(forged_der))

    with pytest.raises(CertificateError, match="key may have been substituted"):
        verify_party_certificate(forged_pem, ca.certificate, expected_id="node-a")


# -- the substituted-key scenario -------------------------------------------------------------


class _SealingResearcher:
    """What a researcher does with a certificate the hub hands over: verify, then seal."""

    def __init__(self, me: PartyIdentity, ca: x509.Certificate) -> None:
        self.me, self.ca = me, ca
        self.sealed_to: list[PublicParty] = []

    def seal_task(self, node_id: str, cert_pem: bytes, plaintext: bytes) -> bytes:
        node = verify_party_certificate(cert_pem, self.ca, expected_id=node_id, expected_role=Role.NODE)
        self.sealed_to.append(node)
        body = seal(plaintext, header=b"h", sender=self.me, recipient=node)
        return body.ciphertext


def _attacker_cert_same_name(ca: CertificateAuthority, attacker: PartyIdentity) -> bytes:
    return CertificateAuthority.create("acme").issue(attacker.public)


def _attacker_cert_other_name(ca: CertificateAuthority, attacker: PartyIdentity) -> bytes:
    return CertificateAuthority.create("evil-hub").issue(attacker.public)


def _self_signed_by_attacker(ca: CertificateAuthority, attacker: PartyIdentity) -> bytes:
    # The attacker forges the issuer name to be the consortium CA's, signs with its own key.
    fake = CertificateAuthority(attacker.signing_key, ca.certificate)
    return fake.issue(attacker.public)


def _genuine_cert_of_node_b(ca: CertificateAuthority, attacker: PartyIdentity) -> bytes:
    return ca.issue(PartyIdentity.generate("node-b", "org-b", Role.NODE).public)


def _genuine_cert_of_a_researcher_named_node_a(ca: CertificateAuthority, attacker: PartyIdentity) -> bytes:
    return ca.issue(
        PublicParty("node-a", "org-a", Role.RESEARCHER, attacker.public.verify_key, attacker.public.seal_key)
    )


@pytest.mark.parametrize(
    ("make_forgery", "reason"),
    [
        (_attacker_cert_same_name, "substituted"),
        (_attacker_cert_other_name, "not issued by the consortium CA"),
        (_self_signed_by_attacker, "substituted"),
        (_genuine_cert_of_node_b, "hub may be substituting keys"),
        (_genuine_cert_of_a_researcher_named_node_a, "not a node"),
    ],
    ids=[
        "attacker-ca-same-name",
        "attacker-ca",
        "issuer-name-forged",
        "node-b-in-place",
        "wrong-role",
    ],
)
def test_hub_substituting_node_keys_is_caught_before_sealing(
    ca: CertificateAuthority,
    alice: PartyIdentity,
    make_forgery: Callable[[CertificateAuthority, PartyIdentity], bytes],
    reason: str,
) -> None:
    attacker = PartyIdentity.generate("node-a", "org-a", Role.NODE)
    researcher = _SealingResearcher(alice, ca.certificate)
    forged_pem = make_forgery(ca, attacker)

    with pytest.raises(CertificateError, match=reason):
        researcher.seal_task("node-a", forged_pem, b"patient query")

    assert researcher.sealed_to == []


def test_genuine_certificate_lets_only_that_node_open(
    ca: CertificateAuthority, alice: PartyIdentity, node_a: PartyIdentity
) -> None:
    attacker = PartyIdentity.generate("node-a", "org-a", Role.NODE)
    node = verify_party_certificate(ca.issue(node_a.public), ca.certificate, expected_id="node-a")
    body = seal(b"patient query", header=b"h", sender=alice, recipient=node)
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)

    def open_as(me: PartyIdentity) -> bytes:
        return open_sealed(
            body,
            header=b"h",
            recipient_id="node-a",
            message_id=b"\0" * 16,
            timestamp_ms=now_ms,
            me=me,
            sender=alice.public,
            guard=MemoryReplayGuard(),
        )

    assert open_as(node_a) == b"patient query"
    with pytest.raises(TamperedError):
        open_as(attacker)


# -- TLS --------------------------------------------------------------------------------------


def test_issue_tls_gives_a_server_certificate_with_the_sans(ca: CertificateAuthority) -> None:
    hostnames = ["localhost", "127.0.0.1", "hub.example.org", "::1"]

    tls = ca.issue_tls(hostnames)

    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    key = serialization.load_pem_private_key(tls.key_pem, None)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "hub.example.org"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert cert.issuer == ca.certificate.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == cert.public_key()
    ca.key.public_key().verify(cert.signature, cert.tbs_certificate_bytes)
