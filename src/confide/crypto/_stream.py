"""Sealing large payloads as a stream of 1 MiB chunks under one content key.

Opening an HPKE context and signing for every megabyte would be slow and would let a
relay reorder, drop or splice chunks between streams. Instead (DESIGN section 4):

1. the sender draws a fresh 256-bit content key and a 16-byte stream id, and seals both
   to the recipient with :func:`seal` (HPKE + Ed25519, bound to the opening envelope's
   header): only the recipient can read the key, and it knows who sent it;
2. chunk i is AES-256-GCM under that key with nonce = i (96-bit big-endian; the key is
   never reused, so nonces never repeat) and associated data
   ``stream id || i || final flag``: a chunk cannot be altered, moved to another index,
   replayed into another stream, or passed off as the last one;
3. the recipient opens chunks strictly in order and accepts the stream as complete
   only on an authenticated chunk flagged final, so truncation is detected.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from confide._errors import TamperedError, WireError

__all__ = ["CHUNK_SIZE", "StreamKey", "StreamOpener", "StreamSealer"]

CHUNK_SIZE = 1024 * 1024
_KEY = 32
_ID = 16
_AAD = struct.Struct(">16sQ?")
_NONCE = struct.Struct(">4xQ")


@dataclass(frozen=True)
class StreamKey:
    """A stream's id and content key: what the opening message seals to the recipient."""

    stream_id: bytes
    key: bytes

    @classmethod
    def generate(cls) -> StreamKey:
        """A fresh key and id from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(_ID), AESGCM.generate_key(bit_length=256))

    def to_bytes(self) -> bytes:
        """``stream id || key``, to be sealed with :func:`confide.crypto.seal`."""
        return self.stream_id + self.key

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamKey:
        """Parse what :meth:`to_bytes` produced (after it was opened)."""
        if len(data) != _ID + _KEY:
            raise WireError(f"a stream key is {_ID + _KEY} bytes, not {len(data)}")
        return cls(data[:_ID], data[_ID:])


class StreamSealer:
    """Encrypts the chunks of one stream, in order."""

    def __init__(self, stream: StreamKey) -> None:
        self._stream = stream
        self._aead = AESGCM(stream.key)
        self._next = 0
        self._closed = False

    def seal_chunk(self, data: bytes, *, final: bool) -> tuple[int, bytes]:
        """Encrypt the next chunk; return its index and ciphertext."""
        if self._closed:
            raise WireError("the stream was already closed by a final chunk")
        if len(data) > CHUNK_SIZE:
            raise WireError(f"a chunk holds at most {CHUNK_SIZE} bytes, not {len(data)}")
        index = self._next
        ciphertext = self._aead.encrypt(
            _NONCE.pack(index), data, _AAD.pack(self._stream.stream_id, index, final)
        )
        self._next += 1
        self._closed = final
        return index, ciphertext


class StreamOpener:
    """Decrypts the chunks of one stream, refusing anything out of order or altered."""

    def __init__(self, stream: StreamKey) -> None:
        self._stream = stream
        self._aead = AESGCM(stream.key)
        self._next = 0
        self.complete = False

    @property
    def next_index(self) -> int:
        """The index of the chunk due next."""
        return self._next

    def open_chunk(self, index: int, ciphertext: bytes, *, final: bool) -> bytes:
        """Decrypt chunk ``index``; :class:`TamperedError` if it does not authenticate."""
        if self.complete:
            raise TamperedError("a chunk arrived after the stream's final chunk")
        if index != self._next:
            raise TamperedError(f"stream chunk {index} arrived where chunk {self._next} was due")
        try:
            data = self._aead.decrypt(
                _NONCE.pack(index), ciphertext, _AAD.pack(self._stream.stream_id, index, final)
            )
        except InvalidTag:
            raise TamperedError(
                f"stream chunk {index} does not authenticate (altered, from another stream, "
                "or its final flag changed); the stream was refused"
            ) from None
        self._next += 1
        self.complete = final
        return data
