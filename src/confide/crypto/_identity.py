"""Party identities: an Ed25519 key that signs and an X25519 key that receives sealed messages.

A private :class:`PartyIdentity` lives in a kit on the party's own machine (files written
0600); its public half, :class:`PublicParty`, is what certificates bind and what peers
seal to and verify against. The fingerprint is a stable SHA-256 over both raw public keys,
so a person can compare it out of band.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from confide._errors import KeyFileError

__all__ = ["PartyIdentity", "PublicParty", "Role", "fingerprint", "write_private_file"]

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


class Role(enum.StrEnum):
    """What a party is in the consortium; bound into its certificate."""

    NODE = "node"
    RESEARCHER = "researcher"
    HUB = "hub"


def fingerprint(verify_key: bytes, seal_key: bytes) -> str:
    """Return the stable fingerprint of a party's two raw public keys (64 hex digits)."""
    return hashlib.sha256(b"confide-fp-v1" + verify_key + seal_key).hexdigest()


@dataclass(frozen=True)
class PublicParty:
    """The public identity of a party, as bound by its certificate.

    Parameters
    ----------
    party_id : str
        Consortium-unique id (``node-a``, ``alice``).
    organisation : str
        Organisation id the party belongs to.
    role : Role
        Node, researcher or hub.
    verify_key : bytes
        Raw 32-byte Ed25519 public key.
    seal_key : bytes
        Raw 32-byte X25519 public key.
    """

    party_id: str
    organisation: str
    role: Role
    verify_key: bytes
    seal_key: bytes

    @property
    def fingerprint(self) -> str:
        """Stable SHA-256 fingerprint of both public keys."""
        return fingerprint(self.verify_key, self.seal_key)

    def ed25519(self) -> ed25519.Ed25519PublicKey:
        """The verification key as a ``cryptography`` object."""
        return ed25519.Ed25519PublicKey.from_public_bytes(self.verify_key)

    def x25519(self) -> x25519.X25519PublicKey:
        """The sealing key as a ``cryptography`` object."""
        return x25519.X25519PublicKey.from_public_bytes(self.seal_key)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this party's Ed25519 signature over ``data``."""
        try:
            self.ed25519().verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PartyIdentity:
    """A party's private keys, with the public facts about it."""

    party_id: str
    organisation: str
    role: Role
    signing_key: ed25519.Ed25519PrivateKey
    unseal_key: x25519.X25519PrivateKey

    @classmethod
    def generate(cls, party_id: str, organisation: str, role: Role) -> PartyIdentity:
        """Create fresh keys from the operating system's CSPRNG."""
        return cls(
            party_id=party_id,
            organisation=organisation,
            role=role,
            signing_key=ed25519.Ed25519PrivateKey.generate(),
            unseal_key=x25519.X25519PrivateKey.generate(),
        )

    @property
    def public(self) -> PublicParty:
        """The public half, as a certificate would bind it."""
        return PublicParty(
            party_id=self.party_id,
            organisation=self.organisation,
            role=self.role,
            verify_key=self.signing_key.public_key().public_bytes(_RAW, _RAW_PUB),
            seal_key=self.unseal_key.public_key().public_bytes(_RAW, _RAW_PUB),
        )

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature over ``data``."""
        return self.signing_key.sign(data)

    def save(self, directory: Path) -> None:
        """Write ``signing.key`` and ``sealing.key`` (PKCS#8 PEM, mode 0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in (("signing.key", self.signing_key), ("sealing.key", self.unseal_key)):
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private_file(directory / name, pem)

    @classmethod
    def load(cls, directory: Path, party_id: str, organisation: str, role: Role) -> PartyIdentity:
        """Read the two key files written by :meth:`save`."""
        signing = _load_private(directory / "signing.key")
        sealing = _load_private(directory / "sealing.key")
        if not isinstance(signing, ed25519.Ed25519PrivateKey):
            raise KeyFileError(f"{directory / 'signing.key'} is not an Ed25519 private key")
        if not isinstance(sealing, x25519.X25519PrivateKey):
            raise KeyFileError(f"{directory / 'sealing.key'} is not an X25519 private key")
        return cls(party_id, organisation, role, signing, sealing)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load_private(path: Path) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}; is the kit complete?") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(
            f"{path} is not a PEM private key; re-issue the kit with 'confide provision'"
        ) from None
