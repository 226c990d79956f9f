"""The names ``confide.crypto`` exports are its public API; changing them is deliberate."""

from __future__ import annotations

import confide.crypto


def test_exported_names_are_pinned() -> None:
    exported = set(confide.crypto.__all__)

    assert exported == {
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
    }
    assert all(hasattr(confide.crypto, name) for name in exported)
