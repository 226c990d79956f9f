"""Crypto recipes: the only package that touches ``cryptography.hazmat``.

- ``_identity``: party keys (Ed25519 signing, X25519 sealing), fingerprints, key files
- ``_seal``: HPKE seal to one recipient + Ed25519 signature; ``open_sealed`` with its checks
- ``_pki``: the consortium CA and party certificates binding both public keys
- ``_stream``: large payloads as 1 MiB AES-GCM chunks under one sealed content key
"""

from confide.crypto._identity import (
    PartyIdentity,
    PublicParty,
    Role,
    fingerprint,
    write_private_file,
)
from confide.crypto._pki import (
    CertificateAuthority,
    TlsCredentials,
    certificate_pem,
    load_certificate,
    verify_party_certificate,
)
from confide.crypto._seal import MemoryReplayGuard, ReplayGuard, SealedBody, open_sealed, seal
from confide.crypto._stream import CHUNK_SIZE, StreamKey, StreamOpener, StreamSealer

__all__ = [
    "CHUNK_SIZE",
    "CertificateAuthority",
    "MemoryReplayGuard",
    "PartyIdentity",
    "PublicParty",
    "ReplayGuard",
    "Role",
    "SealedBody",
    "StreamKey",
    "StreamOpener",
    "StreamSealer",
    "TlsCredentials",
    "certificate_pem",
    "fingerprint",
    "load_certificate",
    "open_sealed",
    "seal",
    "verify_party_certificate",
    "write_private_file",
]
