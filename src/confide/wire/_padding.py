"""Length hiding: what is sealed is padded to a size bucket, so its size says little about its content.

A sealed result, task input or peer message whose plaintext held a longer value would
otherwise be a longer envelope, and the hub (or anyone on the path) sees sizes. Plaintexts
are padded ISO/IEC 7816-4 style (a 0x80 byte, then zeros) to the next bucket: at least
256 bytes, then multiples of an eighth of the power of two below the size, so padding
costs under 12.5 % and a size reveals about three bits of its length. The envelope says it
is padded (``Flags.PADDED``, bound into the seal with the header), so envelopes sealed
before padding existed still open.
"""

from __future__ import annotations

from confide._errors import WireError

__all__ = ["MIN_BUCKET", "pad", "padded_size", "unpad"]

MIN_BUCKET = 256
_MARK = b"\x80"


def padded_size(size: int) -> int:
    """The bucket ``size`` bytes are padded to."""
    if size <= MIN_BUCKET:
        return MIN_BUCKET
    step = 1 << (size.bit_length() - 4)  # size > 256: at least 32
    return -(-size // step) * step


def pad(data: bytes) -> bytes:
    """``data``, a 0x80 byte and zeros up to the bucket of ``len(data) + 1``."""
    target = padded_size(len(data) + 1)
    return data + _MARK + bytes(target - len(data) - 1)


def unpad(data: bytes) -> bytes:
    """The inverse of :func:`pad`; :class:`WireError` if ``data`` is not padded that way."""
    end = len(data.rstrip(b"\x00"))
    if end == 0 or data[end - 1 : end] != _MARK or len(data) != padded_size(end):
        raise WireError("a padded plaintext is not padded to its bucket")
    return data[: end - 1]
