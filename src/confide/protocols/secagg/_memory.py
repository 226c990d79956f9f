"""Drive one round entirely in memory: the protocol's tests, and the simulation benchmark.

Every message goes through its binary form, so the codec is exercised as over the hub.
``drops`` names, per node, the stage at which it vanishes instead of answering.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from confide._errors import ProtocolError
from confide.protocols.secagg._client import SecAggClient
from confide.protocols.secagg._messages import (
    Advertise,
    ClientMessage,
    MaskedInput,
    ShareKeys,
    Unmask,
    decode_message,
    encode_message,
)
from confide.protocols.secagg._server import Outbox, SecAggServer, ServerStage

__all__ = ["run_in_memory"]

_STAGE_OF: dict[type, ServerStage] = {
    Advertise: ServerStage.ADVERTISE,
    ShareKeys: ServerStage.SHARE_KEYS,
    MaskedInput: ServerStage.MASKED_INPUT,
    Unmask: ServerStage.UNMASK,
}


def run_in_memory(
    clients: Mapping[str, SecAggClient],
    *,
    drops: Mapping[str, ServerStage] | None = None,
    leaves: Mapping[str, ServerStage] | None = None,
    wire: bool = True,
) -> SecAggServer:
    """Run a round among ``clients`` and return the server (``outcome`` or ``error`` set).

    Parameters
    ----------
    clients
        One client per node of the round, by node id.
    drops
        Node -> the stage whose message it never sends (it vanishes instead).
    leaves
        Node -> the stage whose message it sends and then vanishes at once.
    wire
        Send every message through :func:`encode_message` / :func:`decode_message`.
    """
    config = next(iter(clients.values())).config
    server = SecAggServer(config)
    drops = drops or {}
    leaves = leaves or {}
    gone: set[str] = set()
    pending: deque[tuple[str, object]] = deque()

    def submit(node: str, reply: ClientMessage | None) -> None:
        if reply is None:
            return
        if drops.get(node) is _STAGE_OF[type(reply)]:
            gone.add(node)
            pending.extend(server.drop(node))
            return
        if wire:
            decoded = decode_message(encode_message(reply), config)
            if not isinstance(decoded, type(reply)):
                raise ProtocolError("the codec changed a message's kind")
            reply = decoded
        pending.extend(server.receive(node, reply))
        if leaves.get(node) is _STAGE_OF[type(reply)]:
            gone.add(node)
            pending.extend(server.drop(node))

    for node in sorted(clients):
        submit(node, clients[node].start())
    outbox: Outbox
    while pending:
        node, message = pending.popleft()
        if node in gone:
            continue
        if wire:
            message = decode_message(encode_message(message), config)  # type: ignore[arg-type]
        try:
            submit(node, clients[node].handle(message))  # type: ignore[arg-type]
        except ProtocolError:
            gone.add(node)
            outbox = server.drop(node)
            pending.extend(outbox)
    return server
