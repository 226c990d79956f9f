"""The consortium PKI: an offline CA that certifies every party's two public keys.

A party certificate is X.509 signed by the CA's Ed25519 key. Its subject names the
party (CN), organisation (O) and role (OU); its subject public key is the party's
Ed25519 verification key, and a private (non-critical) extension carries the X25519 sealing
key, so one signature binds both keys to the id. Every party checks every peer's
certificate against the CA before sealing to or trusting it, which is how a hub that
substitutes keys is caught.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from confide._errors import CertificateError, KeyFileError
from confide.crypto._identity import PublicParty, Role, write_private_file

__all__ = [
    "CertificateAuthority",
    "TlsCredentials",
    "certificate_pem",
    "load_certificate",
    "verify_party_certificate",
]

# Private arc for confide's certificate extension carrying the X25519 sealing key.
SEAL_KEY_OID = x509.ObjectIdentifier("1.3.6.1.4.1.59419.7.1")
_VALIDITY = dt.timedelta(days=3 * 365)


@dataclass(frozen=True)
class TlsCredentials:
    """A TLS key and certificate (PEM) for the hub's listener."""

    key_pem: bytes
    cert_pem: bytes


class CertificateAuthority:
    """The consortium CA: an Ed25519 key and a self-signed certificate."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate

    @classmethod
    def create(cls, consortium: str) -> CertificateAuthority:
        """Make a new CA for ``consortium``."""
        key = ed25519.Ed25519PrivateKey.generate()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"{consortium} consortium CA"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, consortium),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, None)
        )
        return cls(key, cert)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, party: PublicParty) -> bytes:
        """Certify ``party``'s id, organisation, role and both public keys; return PEM."""
        now = _now()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, party.party_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, party.organisation),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, party.role.value),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(party.ed25519())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.UnrecognizedExtension(SEAL_KEY_OID, party.seal_key), critical=False)
            .sign(self.key, None)
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def issue_tls(self, hostnames: list[str]) -> TlsCredentials:
        """Issue an ECDSA P-256 server certificate for the hub's TLS listener."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, None)
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return TlsCredentials(key_pem, cert.public_bytes(serialization.Encoding.PEM))

    def save(self, directory: Path) -> None:
        """Write ``ca.key`` (0600) and ``ca.crt``; keep this directory offline."""
        directory.mkdir(parents=True, exist_ok=True)
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(directory / "ca.key", pem)
        (directory / "ca.crt").write_bytes(self.certificate_pem)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Read a CA written by :meth:`save`."""
        try:
            key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot load the CA key from {directory / 'ca.key'}: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyFileError(f"{directory / 'ca.key'} is not an Ed25519 key")
        try:
            pem = (directory / "ca.crt").read_bytes()
        except OSError as exc:
            raise KeyFileError(
                f"cannot read the CA certificate {directory / 'ca.crt'}: {exc.strerror}"
            ) from None
        return cls(key, load_certificate(pem, str(directory / "ca.crt")))


def load_certificate(pem: bytes, where: str) -> x509.Certificate:
    """Parse one PEM certificate, naming ``where`` it came from on failure."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError(f"{where} does not hold a PEM certificate") from None


def certificate_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def verify_party_certificate(
    cert_pem: bytes,
    ca: x509.Certificate,
    *,
    expected_id: str | None = None,
    expected_role: Role | None = None,
) -> PublicParty:
    """Check that ``cert_pem`` is issued by ``ca``, valid now, and for the expected party.

    Returns the certified :class:`PublicParty`; raises :class:`CertificateError` otherwise.
    """
    cert = load_certificate(cert_pem, f"certificate of {expected_id or 'a peer'}")
    who = expected_id or _attr(cert, NameOID.COMMON_NAME)
    ca_key = ca.public_key()
    if not isinstance(ca_key, ed25519.Ed25519PublicKey) or cert.issuer != ca.subject:
        raise CertificateError(f"certificate of {who!r} was not issued by the consortium CA")
    try:
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise CertificateError(
            f"certificate of {who!r} does not verify against the consortium CA: "
            "the key may have been substituted; refusing to use it"
        ) from None
    now = _now()
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise CertificateError(f"certificate of {who!r} is expired or not yet valid")
    party_id = _attr(cert, NameOID.COMMON_NAME)
    role_value = _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
    try:
        role = Role(role_value)
    except ValueError:
        raise CertificateError(f"certificate of {who!r} names an unknown role {role_value!r}") from None
    if expected_id is not None and party_id != expected_id:
        raise CertificateError(
            f"expected a certificate for {expected_id!r} but got one for {party_id!r}: "
            "the hub may be substituting keys; refusing to use it"
        )
    if expected_role is not None and role != expected_role:
        raise CertificateError(f"{party_id!r} is certified as a {role.value}, not a {expected_role.value}")
    verify_key = cert.public_key()
    if not isinstance(verify_key, ed25519.Ed25519PublicKey):
        raise CertificateError(f"certificate of {party_id!r} does not hold an Ed25519 key")
    try:
        ext = cert.extensions.get_extension_for_oid(SEAL_KEY_OID).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"certificate of {party_id!r} carries no sealing key") from None
    if not isinstance(ext, x509.UnrecognizedExtension) or len(ext.value) != 32:
        raise CertificateError(f"certificate of {party_id!r} has a malformed sealing key")
    return PublicParty(
        party_id=party_id,
        organisation=_attr(cert, NameOID.ORGANIZATION_NAME),
        role=role,
        verify_key=verify_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        seal_key=ext.value,
    )


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if not attrs:
        raise CertificateError(f"certificate subject lacks {oid._name}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
