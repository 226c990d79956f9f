"""What both ends of HTTPS long-polling agree on: the requests, the body format, the limits.

No WebSocket upgrade and no HTTP/2 are needed; every exchange is an ordinary request
that any forward proxy and TLS-inspecting middlebox passes. The node always asks, the
hub only answers:

1. ``POST /lp/sessions`` opens a session and returns ``{"session": <token>}``; the token
   names the session in every later request (it is a capability: TLS protects it);
2. ``POST /lp/sessions/{sid}/frames`` carries node -> hub frames, answered 204;
3. ``GET /lp/sessions/{sid}/frames?wait=<s>`` is held until the hub has frames for the
   node (200 with the frames) or ``wait`` seconds pass (204, and the node asks again);
4. ``DELETE /lp/sessions/{sid}`` ends the session; an unknown or closed one answers 404.

Bodies in both directions are frames packed as ``u32 big-endian length | bytes``
(:func:`pack_frames` / :func:`unpack_frames`), at most :data:`MAX_BODY` bytes each.
Errors are JSON ``{"error", "message"}``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from confide._errors import WireError

__all__ = [
    "LENGTH_SIZE",
    "MAX_BODY",
    "MAX_FRAME",
    "MEDIA_TYPE",
    "PREFIX",
    "batches",
    "pack_frames",
    "unpack_frames",
]

PREFIX = "/lp"
"""Where the hub mounts the long-poll endpoints, below its base URL."""
MEDIA_TYPE = "application/octet-stream"
MAX_BODY = 64 * 1024 * 1024
"""The largest request or response body, in bytes."""
MAX_FRAME = MAX_BODY - 4
"""The largest single frame: one frame and its length prefix fit in one body."""
_LENGTH = struct.Struct(">I")
LENGTH_SIZE = _LENGTH.size
"""The bytes a frame's length prefix adds to a body."""


def pack_frames(frames: Iterable[bytes]) -> bytes:
    """Concatenate frames, each prefixed with its length as a big-endian u32."""
    return b"".join(_LENGTH.pack(len(f)) + f for f in frames)


def unpack_frames(body: bytes) -> list[bytes]:
    """Split a body made by :func:`pack_frames`; :class:`WireError` if it is truncated."""
    frames = []
    view = memoryview(body)
    at = 0
    while at < len(view):
        if len(view) - at < _LENGTH.size:
            raise WireError(f"frame length prefix truncated at byte {at} of {len(view)}")
        (size,) = _LENGTH.unpack_from(view, at)
        at += _LENGTH.size
        if size > len(view) - at:
            raise WireError(f"frame at byte {at} claims {size} bytes but only {len(view) - at} follow")
        frames.append(bytes(view[at : at + size]))
        at += size
    return frames


def batches(frames: list[bytes]) -> list[list[bytes]]:
    """Split frames, in order, into groups whose packed size fits :data:`MAX_BODY`."""
    groups: list[list[bytes]] = [[]]
    size = 0
    for frame in frames:
        if groups[-1] and size + _LENGTH.size + len(frame) > MAX_BODY:
            groups.append([])
            size = 0
        groups[-1].append(frame)
        size += _LENGTH.size + len(frame)
    return groups
