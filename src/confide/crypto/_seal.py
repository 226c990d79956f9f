"""Sealing a message to one party: HPKE to the recipient, Ed25519 by the sender.

``seal`` encrypts with HPKE (RFC 9180, Base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-128-GCM) to the recipient's X25519 key, with the envelope header as
the HPKE ``info``: the header enters the key schedule, so any change to it or to the
ciphertext makes the AEAD fail. The sender then signs ``header || ciphertext`` with
Ed25519, which is what proves who sent it (Base mode alone authenticates no sender).

``open_sealed`` checks, in order, and raises a distinct error for each:

1. the header names us as recipient               -> WrongRecipientError
2. the timestamp is within the freshness window   -> StaleMessageError
3. the AEAD opens under our key with this header  -> TamperedError
4. the signature verifies under the sender's key  -> BadSignatureError
5. the message id was not seen in the window      -> ReplayError

The id is recorded only after every other check passed, so a forged copy cannot burn a
genuine message's id.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from confide._errors import (
    BadSignatureError,
    ReplayError,
    StaleMessageError,
    TamperedError,
    WrongRecipientError,
)
from confide.crypto._identity import PartyIdentity, PublicParty

__all__ = [
    "SIGNATURE_SIZE",
    "MemoryReplayGuard",
    "ReplayGuard",
    "SealedBody",
    "open_bound",
    "open_sealed",
    "seal",
]

SIGNATURE_SIZE = 64
DEFAULT_MAX_AGE_MS = 10 * 60 * 1000
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)


@dataclass(frozen=True)
class SealedBody:
    """HPKE ciphertext (encapsulated key first) and the sender's signature."""

    ciphertext: bytes
    signature: bytes


class ReplayGuard(Protocol):
    """Remembers message ids while their messages could still pass the freshness check."""

    def seen(self, message_id: bytes, keep_until_ms: int) -> bool:
        """Record ``message_id`` until ``keep_until_ms``; return True if it was recorded already."""
        ...


class MemoryReplayGuard:
    """Replay guard in memory, bounded in size.

    An id is kept until its message's timestamp plus the freshness limit it was checked
    with: after that a copy is refused as stale before the guard is asked, so forgetting
    it is safe. Past ``max_ids`` the ids closest to expiry are dropped first.
    """

    def __init__(self, max_ids: int = 1_000_000) -> None:
        self._max_ids = max_ids
        self._ids: dict[bytes, int] = {}
        self._expiry: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()

    def seen(self, message_id: bytes, keep_until_ms: int) -> bool:
        with self._lock:
            self._drop(lambda until: until < _now_ms())
            if message_id in self._ids:
                return True
            self._drop(lambda _: len(self._ids) >= self._max_ids)
            self._ids[message_id] = keep_until_ms
            heapq.heappush(self._expiry, (keep_until_ms, message_id))
            return False

    def _drop(self, condition: Callable[[int], bool]) -> None:
        while self._expiry and condition(self._expiry[0][0]):
            until, message_id = heapq.heappop(self._expiry)
            if self._ids.get(message_id) == until:
                del self._ids[message_id]


def seal(plaintext: bytes, *, header: bytes, sender: PartyIdentity, recipient: PublicParty) -> SealedBody:
    """Encrypt ``plaintext`` to ``recipient`` bound to ``header`` and sign as ``sender``."""
    ciphertext = _SUITE.encrypt(plaintext, recipient.x25519(), info=header)
    return SealedBody(ciphertext=ciphertext, signature=sender.sign(header + ciphertext))


def open_sealed(
    body: SealedBody,
    *,
    header: bytes,
    recipient_id: str,
    message_id: bytes,
    timestamp_ms: int,
    me: PartyIdentity,
    sender: PublicParty,
    guard: ReplayGuard,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    now_ms: int | None = None,
) -> bytes:
    """Open a sealed body addressed to ``me``; see the module docstring for the checks."""
    if recipient_id != me.party_id:
        raise WrongRecipientError(
            f"message is addressed to {recipient_id!r}, not to this party ({me.party_id!r})"
        )
    now = _now_ms() if now_ms is None else now_ms
    if now - timestamp_ms > max_age_ms:
        raise StaleMessageError(
            f"message from {sender.party_id!r} is {(now - timestamp_ms) / 1000:.0f} s old "
            f"(limit {max_age_ms / 1000:.0f} s); it was refused: ask the sender to send it again"
        )
    if timestamp_ms - now > max_age_ms:
        raise StaleMessageError(
            f"message from {sender.party_id!r} is dated {(timestamp_ms - now) / 1000:.0f} s in the "
            f"future (limit {max_age_ms / 1000:.0f} s); check both machines' clocks (NTP)"
        )
    try:
        plaintext = _SUITE.decrypt(body.ciphertext, me.unseal_key, info=header)
    except (InvalidTag, ValueError):
        raise TamperedError(
            f"message claiming to come from {sender.party_id!r} was altered in transit "
            "(header or body does not authenticate); it was refused"
        ) from None
    try:
        sender.ed25519().verify(body.signature, header + body.ciphertext)
    except InvalidSignature:
        raise BadSignatureError(
            f"message is not signed by {sender.party_id!r} "
            f"(key fingerprint {sender.fingerprint[:16]}); it was refused"
        ) from None
    if guard.seen(message_id, timestamp_ms + max_age_ms):
        raise ReplayError(
            f"message {message_id.hex()} from {sender.party_id!r} was received before; the replay was refused"
        )
    return plaintext


def open_bound(body: SealedBody, *, header: bytes, me: PartyIdentity, sender: PublicParty) -> bytes:
    """Open a body sealed to ``me`` under a ``header`` that already names its one use.

    For protocol messages whose header binds the session, the stage, the sender and the
    recipient (a secure-aggregation share, a researcher's pad): such a body cannot be
    replayed into another use, so no message id, timestamp or replay guard is needed.

    Raises
    ------
    TamperedError
        If the header or the ciphertext was altered.
    BadSignatureError
        If ``sender`` did not sign it.
    """
    try:
        plaintext = _SUITE.decrypt(body.ciphertext, me.unseal_key, info=header)
    except (InvalidTag, ValueError):
        raise TamperedError(
            f"a protocol message claiming to come from {sender.party_id!r} does not authenticate; "
            "it was refused"
        ) from None
    if not sender.verifies(body.signature, header + body.ciphertext):
        raise BadSignatureError(f"a protocol message is not signed by {sender.party_id!r}; it was refused")
    return plaintext


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
