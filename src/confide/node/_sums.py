"""This node's side of a task's secure-aggregation rounds, the hub as server.

Each round (:mod:`confide.protocols.secagg`) runs as :class:`~confide.protocols.secagg.SecAggClient`
driven here: its messages go to the hub now (never resent: a node that loses the link
drops out of the round, which the protocol survives) and the hub's answers come back
through :meth:`SecureSums.deliver_aggregation`. Each stage's computation runs in a
thread, so mask expansion never blocks the node's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from confide._errors import ProtocolError
from confide.crypto import PartyIdentity, PublicParty
from confide.protocols.secagg import (
    Assembler,
    ClientMessage,
    Contribution,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    ShareKeys,
    Withdraw,
    decode_message,
    encode_message,
    frames_of,
)
from confide.wire import HUB, Envelope

__all__ = ["UNMASKED_ALLOWED", "HubSender", "SecureSums"]

log = logging.getLogger("confide.node.peers")

# Algorithms whose vectors are synthetic (no patient data), so an unmasked baseline round
# reveals nothing; every other algorithm's rounds are masked, whatever it asks.
UNMASKED_ALLOWED = frozenset({"diagnostics.secure_sum"})


class HubSender(Protocol):
    """Sends secure-aggregation frames to the hub now, and can drop the link (the hub link)."""

    async def send_now(self, envelope: Envelope) -> None:
        """Send ``envelope`` now; :class:`ProtocolError` if the link is down."""
        ...

    async def drop(self) -> None:
        """Close the link, as a crashing node would."""
        ...


class SecureSums:
    """One task's secure-aggregation rounds at this node."""

    def __init__(
        self,
        *,
        task_id: str,
        algorithm: str,
        identity: PartyIdentity,
        peers: Mapping[str, PublicParty],
        researcher: PublicParty,
        hub: HubSender,
    ) -> None:
        self._task_id = task_id
        self._algorithm = algorithm
        self._identity = identity
        self._peers = dict(peers)
        self._researcher = researcher
        self._hub = hub
        self._rounds: dict[str, asyncio.Queue[tuple[SecAggConfig, bytes]]] = {}
        self._traffic: dict[str, list[int]] = {}  # session -> [bytes sent, bytes received]
        self._assembler = Assembler(with_config=True)

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._identity.party_id

    @property
    def nodes(self) -> list[str]:
        """Every node of the task, sorted."""
        return sorted({self.node_id, *self._peers})

    async def secure_sum(
        self,
        values: npt.NDArray[np.unsignedinteger[Any]],
        *,
        label: str = "sum",
        bits: int = 64,
        threshold: int | None = None,
        timeout_s: float = 300.0,
        leave_after_input: bool = False,
        masked: bool = True,
    ) -> Contribution:
        """Add ``values`` (encoded in Z_2^bits) into this task's secure sum named ``label``.

        Every node of the task must call it with the same ``label``, length and width.
        The hub, as server, learns only the padded total; the researcher removes the
        pads. Returns who was summed; :class:`ProtocolError` if the round fails.
        ``leave_after_input`` drops the hub connection right after the masked input is
        sent, as a crashing node would (diagnostics of dropout recovery).
        """
        if not masked and self._algorithm not in UNMASKED_ALLOWED:
            raise ProtocolError(
                f"{self._algorithm} asked for an unmasked round; only {sorted(UNMASKED_ALLOWED)} "
                "(synthetic vectors, no patient data) may send values in the clear"
            )
        config = SecAggConfig.create(
            f"{self._task_id}/{label}",
            self.nodes,
            int(values.size),
            bits=bits,
            threshold=threshold,
            researcher=self._researcher.party_id if masked else None,
            masked=masked,
        )
        parties = {**self._peers, self._researcher.party_id: self._researcher}
        client = SecAggClient(config, self._identity, parties, values)
        self._rounds[config.session] = asyncio.Queue()
        self._traffic[config.session] = [0, 0]
        try:
            left = await self._drive(config, client, timeout_s, leave_after_input)
        finally:
            self._rounds.pop(config.session, None)
            sent, received = self._traffic.pop(config.session)
        if left:
            return Contribution(config.session, (), included=False)
        if client.contribution is None:  # pragma: no cover - the loop ends only with one
            raise ProtocolError(f"round {config.session} ended without an outcome")
        return dataclasses.replace(client.contribution, bytes_sent=sent, bytes_received=received)

    async def _drive(
        self, config: SecAggConfig, client: SecAggClient, timeout_s: float, leave_after_input: bool
    ) -> bool:
        """Send each of the client's messages and hand it the hub's answers; True if it left on purpose."""
        reply: ClientMessage | None = client.start()
        preparing: asyncio.Future[None] | None = None
        while reply is not None or client.contribution is None:
            if reply is not None:
                await self._to_hub(config, reply)
                if isinstance(reply, ShareKeys):
                    # expand the masks while the hub gathers everyone's shares
                    preparing = asyncio.ensure_future(asyncio.to_thread(client.prepare_masks))
                if leave_after_input and isinstance(reply, MaskedInput):
                    await self._hub.drop()
                    return True
            message = await self._next(config, client, timeout_s)
            if preparing is not None:
                await preparing
                preparing = None
            reply = await asyncio.to_thread(client.handle, message)  # type: ignore[arg-type]
        return False

    async def _next(self, config: SecAggConfig, client: SecAggClient, timeout_s: float) -> object:
        """The hub's next message of this round, decoded and checked against its configuration."""
        try:
            got_config, data = await asyncio.wait_for(self._rounds[config.session].get(), timeout_s)
        except TimeoutError:
            raise ProtocolError(
                f"round {config.session}: no word from the hub within {timeout_s:.0f} s "
                f"(at stage {client.stage.value}); the round is given up"
            ) from None
        if got_config.digest != config.digest:
            raise ProtocolError(f"round {config.session}: the hub answered for another configuration")
        return decode_message(data, config)

    async def withdraw_from_sum(
        self, length: int, reason: str, *, label: str = "sum", bits: int = 64, threshold: int | None = None
    ) -> None:
        """Tell the hub this node sits out round ``label`` (which it would have joined); log why."""
        config = SecAggConfig.create(
            f"{self._task_id}/{label}",
            self.nodes,
            length,
            bits=bits,
            threshold=threshold,
            researcher=self._researcher.party_id,
        )
        # The hub reads this message: the reason (which may name a value of the node's data)
        # stays here and reaches the researcher only in the node's sealed result.
        log.info("sitting out secure sum %s: %s", label, reason)
        await self._to_hub(
            config, Withdraw(self.node_id, "declined; the researcher's sealed result says why")
        )

    async def _to_hub(self, config: SecAggConfig, message: ClientMessage) -> None:
        data = await asyncio.to_thread(encode_message, message)
        for frame in frames_of(
            data, sender=self.node_id, recipient=HUB, task_id=self._task_id, config=config
        ):
            if config.session in self._traffic:
                self._traffic[config.session][0] += len(frame.body)
            await self._hub.send_now(frame)

    def deliver_aggregation(self, envelope: Envelope) -> None:
        """A chunk of a message from the hub, the server of one of this task's rounds."""
        whole = self._assembler.add(envelope)
        if whole is None:
            return
        config, data = whole
        if config is None:  # pragma: no cover - the assembler always parses a configuration here
            return
        inbox = self._rounds.get(config.session)
        if inbox is None:
            raise ProtocolError(f"a message for round {config.session}, which this node is not in")
        if config.session in self._traffic:
            self._traffic[config.session][1] += len(data)
        inbox.put_nowait((config, data))
