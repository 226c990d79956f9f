"""Sealing to one party and opening with every check (``confide.crypto._seal``)."""

from __future__ import annotations

import dataclasses
import secrets
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import (
    BadSignatureError,
    OpenError,
    ReplayError,
    StaleMessageError,
    TamperedError,
    WrongRecipientError,
)
from confide.crypto import MemoryReplayGuard, PartyIdentity, Role, SealedBody, open_sealed, seal
from confide.crypto._seal import DEFAULT_MAX_AGE_MS, SIGNATURE_SIZE

# Module-level parties: hypothesis tests cannot use function-scoped fixtures.
ALICE = PartyIdentity.generate("alice", "org-r", Role.RESEARCHER)
NODE_A = PartyIdentity.generate("node-a", "org-a", Role.NODE)
NODE_B = PartyIdentity.generate("node-b", "org-b", Role.NODE)
EVE = PartyIdentity.generate("eve", "org-x", Role.RESEARCHER)
HEADER = b"CF\x01 header bytes of the envelope"
HPKE_ENC_SIZE = 32  # X25519 encapsulated key
AEAD_TAG_SIZE = 16  # AES-128-GCM tag
PROPERTY = settings(deadline=None, database=None, max_examples=60)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _open(
    body: SealedBody,
    *,
    header: bytes = HEADER,
    recipient_id: str = "node-a",
    message_id: bytes = b"m" * 16,
    timestamp_ms: int | None = None,
    me: PartyIdentity = NODE_A,
    sender: PartyIdentity = ALICE,
    guard: MemoryReplayGuard | None = None,
    now_ms: int | None = None,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
) -> bytes:
    return open_sealed(
        body,
        header=header,
        recipient_id=recipient_id,
        message_id=message_id,
        timestamp_ms=_now_ms() if timestamp_ms is None else timestamp_ms,
        me=me,
        sender=sender.public,
        guard=MemoryReplayGuard() if guard is None else guard,
        max_age_ms=max_age_ms,
        now_ms=now_ms,
    )


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# -- roundtrip and shape ----------------------------------------------------------------------


def test_seal_then_open_returns_the_plaintext() -> None:
    body = seal(b"the query", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    plaintext = _open(body)

    assert plaintext == b"the query"


def test_sealed_body_has_hpke_and_ed25519_sizes() -> None:
    plaintext = b"x" * 100

    body = seal(plaintext, header=HEADER, sender=ALICE, recipient=NODE_A.public)

    assert len(body.ciphertext) == HPKE_ENC_SIZE + len(plaintext) + AEAD_TAG_SIZE
    assert len(body.signature) == SIGNATURE_SIZE
    assert plaintext not in body.ciphertext


def test_signature_covers_header_and_ciphertext() -> None:
    body = seal(b"data", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    ALICE.public.ed25519().verify(body.signature, HEADER + body.ciphertext)  # raises if wrong


def test_sealing_twice_gives_different_ciphertexts() -> None:
    first = seal(b"same", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    second = seal(b"same", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    assert first.ciphertext != second.ciphertext


@PROPERTY
@given(plaintext=st.binary(max_size=2048), header=st.binary(max_size=300))
def test_open_inverts_seal_for_any_plaintext_and_header(plaintext: bytes, header: bytes) -> None:
    body = seal(plaintext, header=header, sender=ALICE, recipient=NODE_A.public)

    opened = _open(body, header=header, message_id=secrets.token_bytes(16))

    assert opened == plaintext


# -- 1. wrong recipient -----------------------------------------------------------------------


def test_message_addressed_to_another_party_is_refused() -> None:
    body = seal(b"for b", header=HEADER, sender=ALICE, recipient=NODE_B.public)

    with pytest.raises(WrongRecipientError, match=r"addressed to 'node-b'.*'node-a'"):
        _open(body, recipient_id="node-b", me=NODE_A)


def test_message_sealed_to_another_key_does_not_open_even_if_relabelled() -> None:
    body = seal(b"for b", header=HEADER, sender=ALICE, recipient=NODE_B.public)

    with pytest.raises(TamperedError, match="altered in transit"):
        _open(body, recipient_id="node-a", me=NODE_A)


# -- 2. freshness -----------------------------------------------------------------------------


def test_message_older_than_the_window_is_stale() -> None:
    now = _now_ms()
    body = seal(b"old", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(StaleMessageError, match=r"from 'alice' is 601 s old.*limit 600 s"):
        _open(body, timestamp_ms=now - DEFAULT_MAX_AGE_MS - 1000, now_ms=now)


def test_message_too_far_in_the_future_is_stale() -> None:
    now = _now_ms()
    body = seal(b"future", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(StaleMessageError, match="NTP"):
        _open(body, timestamp_ms=now + DEFAULT_MAX_AGE_MS + 1, now_ms=now)


def test_custom_window_is_honoured() -> None:
    now = _now_ms()
    body = seal(b"x", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(StaleMessageError, match=r"limit 5 s"):
        _open(body, timestamp_ms=now - 5_001, now_ms=now, max_age_ms=5_000)


@pytest.mark.parametrize("offset", [-DEFAULT_MAX_AGE_MS, 0, DEFAULT_MAX_AGE_MS])
def test_message_at_the_edge_of_the_window_opens(offset: int) -> None:
    now = _now_ms()
    body = seal(b"edge", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    plaintext = _open(body, timestamp_ms=now + offset, now_ms=now)

    assert plaintext == b"edge"


# -- 3. tampering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index",
    [0, HPKE_ENC_SIZE - 1, HPKE_ENC_SIZE, HPKE_ENC_SIZE + 5, -AEAD_TAG_SIZE, -1],
    ids=["enc-first", "enc-last", "ct-first", "ct-middle", "tag-first", "tag-last"],
)
def test_flipped_ciphertext_byte_is_tampered(index: int) -> None:
    body = seal(b"payload!", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    forged = dataclasses.replace(body, ciphertext=_flip(body.ciphertext, index % len(body.ciphertext)))

    with pytest.raises(TamperedError, match="'alice' was altered"):
        _open(forged)


@pytest.mark.parametrize("index", [0, 3, len(HEADER) - 1])
def test_altered_header_is_tampered(index: int) -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(TamperedError):
        _open(body, header=_flip(HEADER, index))


@pytest.mark.parametrize("header", [HEADER[:-1], HEADER + b"\x00", b""])
def test_truncated_or_extended_header_is_tampered(header: bytes) -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(TamperedError):
        _open(body, header=header)


@pytest.mark.parametrize("ciphertext", [b"", b"\x00" * 10, b"\x00" * 48])
def test_garbage_ciphertext_is_tampered(ciphertext: bytes) -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(TamperedError):
        _open(dataclasses.replace(body, ciphertext=ciphertext))


@PROPERTY
@given(data=st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    body = seal(b"sensitive", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    part = data.draw(st.sampled_from(["header", "ciphertext", "signature"]))
    blob = {"header": HEADER, "ciphertext": body.ciphertext, "signature": body.signature}[part]
    index = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = blob[:index] + bytes([blob[index] ^ (1 << bit)]) + blob[index + 1 :]

    header = flipped if part == "header" else HEADER
    forged = body if part == "header" else dataclasses.replace(body, **{part: flipped})

    expected = BadSignatureError if part == "signature" else TamperedError
    with pytest.raises(expected):
        _open(forged, header=header)


# -- 4. signature -----------------------------------------------------------------------------


def test_signature_by_another_key_is_refused() -> None:
    body = seal(b"from eve", header=HEADER, sender=EVE, recipient=NODE_A.public)

    with pytest.raises(BadSignatureError, match="not signed by 'alice'") as info:
        _open(body, sender=ALICE)

    assert ALICE.public.fingerprint[:16] in str(info.value)


def test_resigned_by_another_key_is_refused() -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    forged = dataclasses.replace(body, signature=EVE.sign(HEADER + body.ciphertext))

    with pytest.raises(BadSignatureError):
        _open(forged)


@pytest.mark.parametrize("index", [0, 31, 32, SIGNATURE_SIZE - 1])
def test_flipped_signature_byte_is_refused(index: int) -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    forged = dataclasses.replace(body, signature=_flip(body.signature, index))

    with pytest.raises(BadSignatureError, match="refused"):
        _open(forged)


@pytest.mark.parametrize("signature", [b"", b"\x00" * SIGNATURE_SIZE, b"\x00" * 65])
def test_malformed_signature_is_refused(signature: bytes) -> None:
    body = seal(b"payload", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    with pytest.raises(BadSignatureError):
        _open(dataclasses.replace(body, signature=signature))


# -- 5. replay --------------------------------------------------------------------------------


def test_second_open_of_the_same_message_id_is_a_replay() -> None:
    guard = MemoryReplayGuard()
    message_id = secrets.token_bytes(16)
    body = seal(b"once", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    assert _open(body, message_id=message_id, guard=guard) == b"once"

    with pytest.raises(ReplayError, match=f"{message_id.hex()} from 'alice' was received before"):
        _open(body, message_id=message_id, guard=guard)


def test_same_message_id_with_separate_guards_opens_twice() -> None:
    body = seal(b"once", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    first = _open(body, guard=MemoryReplayGuard())
    second = _open(body, guard=MemoryReplayGuard())

    assert first == second == b"once"


def test_different_message_ids_do_not_collide() -> None:
    guard = MemoryReplayGuard()
    body = seal(b"x", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    results = [_open(body, message_id=bytes([i]) * 16, guard=guard) for i in range(5)]

    assert results == [b"x"] * 5


@pytest.mark.parametrize(
    "forgery",
    ["ciphertext", "header", "signature", "wrong-recipient", "stale"],
)
def test_refused_forgery_does_not_burn_the_genuine_message_id(forgery: str) -> None:
    guard = MemoryReplayGuard()
    message_id = secrets.token_bytes(16)
    now = _now_ms()
    body = seal(b"genuine", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    forged_body, header, recipient, timestamp = body, HEADER, "node-a", now
    if forgery == "ciphertext":
        forged_body = dataclasses.replace(body, ciphertext=_flip(body.ciphertext, 40))
    elif forgery == "header":
        header = _flip(HEADER, 5)
    elif forgery == "signature":
        forged_body = dataclasses.replace(body, signature=EVE.sign(HEADER + body.ciphertext))
    elif forgery == "wrong-recipient":
        recipient = "node-b"
    else:
        timestamp = now - 2 * DEFAULT_MAX_AGE_MS
    with pytest.raises(OpenError):
        _open(
            forged_body,
            header=header,
            recipient_id=recipient,
            message_id=message_id,
            timestamp_ms=timestamp,
            guard=guard,
            now_ms=now,
        )

    genuine = _open(body, message_id=message_id, timestamp_ms=now, guard=guard, now_ms=now)

    assert genuine == b"genuine"
    with pytest.raises(ReplayError):
        _open(body, message_id=message_id, timestamp_ms=now, guard=guard, now_ms=now)


# -- the replay guard -------------------------------------------------------------------------


def test_guard_reports_an_id_only_the_second_time() -> None:
    guard = MemoryReplayGuard()
    now = _now_ms()

    first, second = guard.seen(b"a" * 16, now), guard.seen(b"a" * 16, now)

    assert (first, second) == (False, True)


def test_guard_is_bounded_and_drops_the_ids_closest_to_expiry_first() -> None:
    guard = MemoryReplayGuard(max_ids=3)
    now = _now_ms()
    for i in (2, 0, 3, 1):  # id 0 expires first, id 3 last
        guard.seen(bytes([i]) * 16, now + 60_000 * (i + 1))

    first_to_expire_again = guard.seen(bytes([0]) * 16, now + 60_000)
    last_to_expire_again = guard.seen(bytes([3]) * 16, now + 240_000)

    assert first_to_expire_again is False
    assert last_to_expire_again is True


def test_guard_forgets_ids_once_their_messages_would_be_stale() -> None:
    guard = MemoryReplayGuard()
    now = _now_ms()
    guard.seen(b"expired-id-00000", now - 1)
    guard.seen(b"current-id-00000", now + 60_000)

    expired_again = guard.seen(b"expired-id-00000", now - 1)
    current_again = guard.seen(b"current-id-00000", now + 60_000)

    assert expired_again is False
    assert current_again is True


def test_open_keeps_the_id_for_the_freshness_limit_it_checked_with() -> None:
    recorded: list[tuple[bytes, int]] = []

    class RecordingGuard:
        def seen(self, message_id: bytes, keep_until_ms: int) -> bool:
            recorded.append((message_id, keep_until_ms))
            return False

    now = _now_ms()
    body = seal(b"x", header=HEADER, sender=ALICE, recipient=NODE_A.public)

    open_sealed(
        body,
        header=HEADER,
        recipient_id="node-a",
        message_id=b"i" * 16,
        timestamp_ms=now,
        me=NODE_A,
        sender=ALICE.public,
        guard=RecordingGuard(),
        max_age_ms=5_000,
    )

    assert recorded == [(b"i" * 16, now + 5_000)]


def test_replay_is_caught_whenever_the_message_passed_the_freshness_check() -> None:
    guard = MemoryReplayGuard()
    message_id = secrets.token_bytes(16)
    # A result fetched an hour after it was sealed, opened with a generous window
    # (the research client uses max_age_ms = 30 days).
    sent = _now_ms() - 3_600_000
    day = 24 * 3_600_000
    body = seal(b"result", header=HEADER, sender=ALICE, recipient=NODE_A.public)
    _open(body, message_id=message_id, timestamp_ms=sent, guard=guard, max_age_ms=day)

    replayed = _try_open(body, message_id, sent, guard, day)

    assert isinstance(replayed, ReplayError)


def _try_open(
    body: SealedBody,
    message_id: bytes,
    timestamp_ms: int,
    guard: MemoryReplayGuard,
    max_age_ms: int,
) -> Exception | bytes:
    try:
        return _open(
            body,
            message_id=message_id,
            timestamp_ms=timestamp_ms,
            guard=guard,
            max_age_ms=max_age_ms,
        )
    except OpenError as exc:
        return exc
