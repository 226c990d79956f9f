"""A party's kit: its keys, certificate, the consortium CA and how to reach the hub.

Layout of one kit directory (written by ``confide provision``)::

    kit.yaml       party id, organisation, role, hub URL, credential token
    signing.key    Ed25519 private key (0600)
    sealing.key    X25519 private key (0600)
    cert.pem       the party's certificate from the consortium CA
    ca.crt         the consortium CA certificate every peer is checked against
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import ConfideError, ConfigError
from confide.crypto import (
    PartyIdentity,
    PublicParty,
    Role,
    certificate_pem,
    load_certificate,
    verify_party_certificate,
)
from confide.kit._yaml import load_model

__all__ = ["Kit", "KitFile", "token_hash"]


class KitFile(BaseModel):
    """The ``kit.yaml`` of a party."""

    model_config = ConfigDict(extra="forbid")

    consortium: str = Field(min_length=1)
    party_id: str = Field(min_length=1)
    organisation: str = Field(min_length=1)
    role: Role
    hub_url: str = Field(min_length=1)
    hub_grpc: str | None = None
    token: str = Field(min_length=16)


def token_hash(token: str) -> str:
    """SHA-256 of a credential token; tokens are 256-bit random, so no slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Kit:
    """A loaded, self-checked kit."""

    directory: Path
    consortium: str
    identity: PartyIdentity
    certificate_pem: bytes
    ca: x509.Certificate
    hub_url: str
    token: str
    hub_grpc: str | None = None

    @property
    def party_id(self) -> str:
        """This party's id."""
        return self.identity.party_id

    @property
    def public(self) -> PublicParty:
        """This party's certified public identity."""
        return self.identity.public

    @property
    def ca_pem(self) -> bytes:
        """The consortium CA certificate (PEM)."""
        return certificate_pem(self.ca)

    def tls_context(self, *, os_trust_store: bool = False) -> ssl.SSLContext:
        """A TLS client context that trusts the consortium CA, which issued the hub's certificate.

        With ``os_trust_store`` the operating system's store is trusted as well, as needed
        behind a proxy that re-signs TLS with the hospital's own CA.
        """
        if os_trust_store:
            import truststore

            context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            # Only the consortium CA: a public CA cannot vouch for "the hub".
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.ca_pem.decode())
        return context

    @classmethod
    def load(cls, directory: Path | str) -> Kit:
        """Load and check a kit directory (or the path of its ``kit.yaml``)."""
        path = Path(directory)
        if path.is_file():
            path = path.parent
        if not path.is_dir():
            raise ConfigError(f"kit directory {path} does not exist; create kits with 'confide provision'")
        meta = load_model(path / "kit.yaml", KitFile, "kit")
        identity = PartyIdentity.load(path, meta.party_id, meta.organisation, meta.role)
        try:
            ca = load_certificate((path / "ca.crt").read_bytes(), str(path / "ca.crt"))
            cert_pem = (path / "cert.pem").read_bytes()
        except OSError as exc:
            raise ConfigError(f"kit {path} is incomplete: {exc.filename} missing") from None
        try:
            certified = verify_party_certificate(
                cert_pem, ca, expected_id=meta.party_id, expected_role=meta.role
            )
        except ConfideError as exc:
            raise ConfigError(f"kit {path}: {exc}") from None
        if certified != identity.public:
            raise ConfigError(
                f"kit {path}: the keys do not match the certificate; the kit is corrupt or mixed up"
            )
        return cls(
            path, meta.consortium, identity, cert_pem, ca, meta.hub_url.rstrip("/"), meta.token, meta.hub_grpc
        )
