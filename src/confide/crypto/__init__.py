"""Crypto recipes: the only package that touches ``cryptography.hazmat``.

- ``_identity``: party keys (Ed25519 signing, X25519 sealing), fingerprints, key files
- ``_seal``: HPKE seal to one recipient + Ed25519 signature; ``open_sealed`` with its checks
- ``_pki``: the consortium CA and party certificates binding both public keys
- ``_stream``: large payloads as 1 MiB AES-GCM chunks under one sealed content key
- ``_prg``: masks from AES-256-CTR keyed by X25519 + HKDF seeds (secure aggregation)
- ``_shamir``: t-of-n Shamir sharing over GF(2^521 - 1)
- ``_fixedpoint``: fixed-point encoding into Z_2^32 / Z_2^64 with overflow checks
"""

from confide.crypto._fixedpoint import FixedPoint, min_bits
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
from confide.crypto._prg import SEED_SIZE, MaskKey, derive_pair_seed, expand_mask
from confide.crypto._seal import (
    SIGNATURE_SIZE,
    MemoryReplayGuard,
    ReplayGuard,
    SealedBody,
    open_bound,
    open_sealed,
    seal,
)
from confide.crypto._shamir import SHARE_SIZE, Share, combine, split
from confide.crypto._stream import CHUNK_SIZE, StreamKey, StreamOpener, StreamSealer

__all__ = [
    "CHUNK_SIZE",
    "SEED_SIZE",
    "SHARE_SIZE",
    "SIGNATURE_SIZE",
    "CertificateAuthority",
    "FixedPoint",
    "MaskKey",
    "MemoryReplayGuard",
    "PartyIdentity",
    "PublicParty",
    "ReplayGuard",
    "Role",
    "SealedBody",
    "Share",
    "StreamKey",
    "StreamOpener",
    "StreamSealer",
    "TlsCredentials",
    "certificate_pem",
    "combine",
    "derive_pair_seed",
    "expand_mask",
    "fingerprint",
    "load_certificate",
    "min_bits",
    "open_bound",
    "open_sealed",
    "seal",
    "split",
    "verify_party_certificate",
    "write_private_file",
]
