"""The names ``confide.crypto`` exports are its public API; changing them is deliberate."""

from __future__ import annotations

import confide.crypto


def test_exported_names_are_pinned() -> None:
    exported = set(confide.crypto.__all__)

    assert exported == {
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
    }
    assert all(hasattr(confide.crypto, name) for name in exported)
