"""Secure aggregation (Bonawitz et al. 2017, SecAgg+ graphs of Bell et al. 2020) with output pads.

Pure state machines and their messages; the hub drives :class:`SecAggServer` over node
connections, the node drives :class:`SecAggClient`, and :func:`run_in_memory` drives a
whole round in one process for tests and simulations.

- ``_config``: the round's public parameters and neighbour graph
- ``_messages``: the messages and their binary form
- ``_frames``: messages between a node and the hub, with the round's configuration in
  front, as ``confide.wire`` chunk envelopes
- ``_client``: a node's stages (advertise, share, mask, unmask)
- ``_server``: the server's stages, dropout recovery
- ``_researcher``: removing the output pads
- ``_memory``: an in-memory driver
"""

from confide.protocols.secagg._client import ClientStage, Contribution, SecAggClient
from confide.protocols.secagg._config import SecAggConfig
from confide.protocols.secagg._frames import Assembler, config_fields, config_from_fields, frames_of
from confide.protocols.secagg._memory import run_in_memory
from confide.protocols.secagg._messages import (
    Abort,
    Advertise,
    ClientMessage,
    Finished,
    Keys,
    MaskedInput,
    MessageKind,
    ServerMessage,
    ShareKeys,
    Shares,
    Survivors,
    Unmask,
    Withdraw,
    decode_message,
    encode_message,
)
from confide.protocols.secagg._researcher import remove_pads
from confide.protocols.secagg._server import AggregateOutcome, SecAggServer, ServerStage

__all__ = [
    "Abort",
    "Advertise",
    "AggregateOutcome",
    "Assembler",
    "ClientMessage",
    "ClientStage",
    "Contribution",
    "Finished",
    "Keys",
    "MaskedInput",
    "MessageKind",
    "SecAggClient",
    "SecAggConfig",
    "SecAggServer",
    "ServerMessage",
    "ServerStage",
    "ShareKeys",
    "Shares",
    "Survivors",
    "Unmask",
    "Withdraw",
    "config_fields",
    "config_from_fields",
    "decode_message",
    "encode_message",
    "frames_of",
    "remove_pads",
    "run_in_memory",
]
