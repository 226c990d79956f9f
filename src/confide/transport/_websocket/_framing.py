"""What both ends of the WebSocket transport agree on: where the hub listens, how big a frame may be.

One envelope is one binary WebSocket message; text messages are refused at both ends.
"""

from __future__ import annotations

__all__ = ["MAX_FRAME", "WEBSOCKET_PATH"]

WEBSOCKET_PATH = "/ws/node"
"""The hub's endpoint for node connections, below its base URL."""
MAX_FRAME = 64 * 1024 * 1024
"""The largest message the node accepts from the hub, in bytes."""
