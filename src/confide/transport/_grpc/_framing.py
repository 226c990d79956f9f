"""What both ends of the gRPC transport agree on: the method, the frame limit and the keepalive.

No generated code: the hub serves a single generic method, ``/confide.v1.Relay/Connect``,
whose messages are raw bytes both ways (identity serializers), one envelope frame per
gRPC message. The node's channel and the hub's server take their limits and keepalive
timing from here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHANNEL_OPTIONS", "GRPC_METHOD", "GRPC_SERVICE", "MAX_FRAME", "SERVER_OPTIONS"]

GRPC_SERVICE = "confide.v1.Relay"
GRPC_METHOD = f"/{GRPC_SERVICE}/Connect"
MAX_FRAME = 64 * 1024 * 1024
"""The largest message either end sends or accepts, in bytes."""

_FRAME_LIMITS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_FRAME),
    ("grpc.max_receive_message_length", MAX_FRAME),
)
# Keepalive pings every 20 s keep idle-timeout proxies and NAT tables from dropping the
# stream and reveal a dead link within 30 s.
_KEEPALIVE: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    *_FRAME_LIMITS,
    *_KEEPALIVE,
    ("grpc.http2.max_pings_without_data", 0),
)
"""The node's channel options (the proxy option is added per connection)."""

SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    # gRPC sets SO_REUSEPORT by default, which would let a second hub "bind" the same
    # port and silently share its nodes; a busy port must be an error instead.
    ("grpc.so_reuseport", 0),
    *_FRAME_LIMITS,
    *_KEEPALIVE,
    # Nodes ping every 20 s (CHANNEL_OPTIONS); by default gRPC answers pings more often
    # than every 5 minutes with GOAWAY "too_many_pings".
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)
"""The hub's server options."""
