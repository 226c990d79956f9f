"""The server's side of secure aggregation (run by the hub), as a pure state machine.

Bonawitz et al. (CCS 2017), Figure 4, server steps; SecAgg+ neighbourhoods (Bell et al.,
CCS 2020). The server collects one message per node and stage; a stage closes when
every node still in the round has answered, or when the driver calls :meth:`close_stage`
(a timeout) or :meth:`drop` (a node vanished). Each close returns the messages to send.

Sets, as in the paper: ``U1`` advertised keys, ``U2`` dealt shares, ``U3`` sent a masked
input (the *survivors*), ``U4`` answered the unmask request. Steps, as numbered in code:

0. keys: forward to each node in ``U1`` its neighbours' signed advertisements;
1. shares: forward to each node in ``U2`` the sealed shares its neighbours dealt it;
2. masked inputs: add them up (the server keeps one running total, freeing each vector
   once added), then tell ``U3`` who survived and who dropped (``U2 - U3``);
3. unmask: reconstruct each survivor's self-mask seed and each dropped node's mask key
   from ``t`` shares, remove the self masks and the survivors' pairwise masks with the
   dropped, and what is left is ``sum_{u in U3} (x_u + pad_u)``.

With fewer than ``t`` nodes at any stage the round aborts *before* anyone reveals a
share, so a failed round reveals nothing. The server never learns an input: every
vector it sees carries a self mask until the total is formed, and the total carries the
researcher's pads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import CryptoError, ProtocolError
from confide.crypto import MaskKey, Share, combine, expand_mask
from confide.protocols.secagg._config import SecAggConfig
from confide.protocols.secagg._messages import (
    Abort,
    Advertise,
    ClientMessage,
    Finished,
    Keys,
    MaskedInput,
    ServerMessage,
    ShareKeys,
    Shares,
    Survivors,
    Unmask,
    Withdraw,
)

__all__ = ["AggregateOutcome", "Outbox", "SecAggServer", "ServerStage"]

_SEED = 32
Outbox = list[tuple[str, ServerMessage]]


class ServerStage(enum.Enum):
    """What the server collects next."""

    ADVERTISE = "advertise"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    UNMASK = "unmask"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class AggregateOutcome:
    """A finished round, as the server sees it.

    ``total`` is the survivors' padded sum in Z_2^bits; ``pads`` maps each survivor to
    its pad seed sealed to the researcher (empty without a researcher).
    """

    session: str
    total: npt.NDArray[np.unsignedinteger[Any]]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    pads: dict[str, bytes]


class SecAggServer:
    """The server of one round."""

    def __init__(self, config: SecAggConfig) -> None:
        self.config = config
        # an unmasked round (the baseline) is only its masked-input stage, in the clear
        self.stage = ServerStage.ADVERTISE if config.masked else ServerStage.MASKED_INPUT
        self.error: str | None = None
        self.outcome: AggregateOutcome | None = None
        self._active: set[str] = set(config.nodes)  # still in the round
        self._inbox: dict[str, Any] = {}  # this stage's messages, by node
        self._adverts: dict[str, Advertise] = {}
        self._dealt: dict[str, ShareKeys] = {}
        self._total = np.zeros(config.length, dtype=np.dtype(f"u{config.bits // 8}"))
        self._pads: dict[str, bytes] = {}
        self._survivors: tuple[str, ...] = ()
        self._dropped: tuple[str, ...] = ()
        self._closers: dict[ServerStage, tuple[type, Callable[[], Outbox]]] = {
            ServerStage.ADVERTISE: (Advertise, self._close_keys),
            ServerStage.SHARE_KEYS: (ShareKeys, self._close_shares),
            ServerStage.MASKED_INPUT: (MaskedInput, self._close_masked),
            ServerStage.UNMASK: (Unmask, self._close_unmask),
        }

    @property
    def finished(self) -> bool:
        """Whether the round is over, done or failed."""
        return self.stage in (ServerStage.DONE, ServerStage.FAILED)

    @property
    def waiting_for(self) -> frozenset[str]:
        """Nodes whose message for the current stage has not arrived."""
        return frozenset(self._active - self._inbox.keys()) if not self.finished else frozenset()

    def receive(self, node: str, message: ClientMessage) -> Outbox:
        """Take ``node``'s message; returns what to send if it completed the stage.

        A message from a node not (or no longer) in the round, for the wrong stage, or
        that names another sender is refused with :class:`ProtocolError` and changes
        nothing.
        """
        if isinstance(message, Withdraw) and message.node == node and self.stage is ServerStage.ADVERTISE:
            return self.drop(node)  # it declined before revealing anything: a dropout at stage 0
        closer = self._closers.get(self.stage)
        if closer is None:
            raise ProtocolError(f"round {self.config.session} is over ({self.stage.value})")
        expected, close = closer
        if node not in self._active:
            raise ProtocolError(f"{node!r} is not (or no longer) in round {self.config.session}")
        if not isinstance(message, expected) or message.node != node:
            raise ProtocolError(
                f"round {self.config.session} expects {expected.__name__} from {node!r} "
                f"at stage {self.stage.value}, not {type(message).__name__}"
            )
        if node in self._inbox:
            raise ProtocolError(
                f"{node!r} already answered stage {self.stage.value} of {self.config.session}"
            )
        if isinstance(message, MaskedInput):
            self._add_masked(message)  # fold in now, so at most one vector per node is held
        self._inbox[node] = message
        return close() if not self.waiting_for else []

    def drop(self, node: str) -> Outbox:
        """``node`` is gone (disconnected); close the stage if it was the last one awaited."""
        if self.finished or node not in self._active:
            return []
        self._active.discard(node)
        if node in self._inbox:
            return []  # it answered this stage; it simply will not answer the next
        return self.close_stage() if not self.waiting_for else []

    def close_stage(self) -> Outbox:
        """Close the current stage with whoever has answered (the driver's timeout)."""
        closer = self._closers.get(self.stage)
        if closer is None:
            return []
        self._active &= self._inbox.keys()
        return closer[1]()

    # 0. keys -------------------------------------------------------------------------
    def _close_keys(self) -> Outbox:
        self._adverts = {n: m for n, m in self._take().items() if m.digest == self.config.digest}
        self._active &= set(self._adverts)
        if len(self._active) < self.config.threshold:
            return self._too_few("advertised keys")
        self.stage = ServerStage.SHARE_KEYS
        return [
            # every advertisement of U1, even of a node gone since: the dealing check below
            # and the clients must agree on one set
            (
                node,
                Keys(
                    tuple(
                        self._adverts[v] for v in sorted(self.config.neighbours(node) & self._adverts.keys())
                    )
                ),
            )
            for node in sorted(self._active)
        ]

    # 1. shares -----------------------------------------------------------------------
    def _close_shares(self) -> Outbox:
        keyed = set(self._adverts)
        self._dealt = {
            node: m
            for node, m in self._take().items()
            if set(m.sealed) == self.config.neighbours(node) & keyed  # dealt to exactly its keyed neighbours
        }
        self._active &= set(self._dealt)
        if len(self._active) < self.config.threshold:
            return self._too_few("dealt their shares")
        self.stage = ServerStage.MASKED_INPUT
        return [
            (
                v,
                Shares(
                    # from all of U2: a dealer gone since is in the sum's dropped set, and
                    # the server cancels v's masks with it, so v must have made them
                    {
                        u: self._dealt[u].sealed[v]
                        for u in sorted(self.config.neighbours(v) & self._dealt.keys())
                    }
                ),
            )
            for v in sorted(self._active)
        ]

    # 2. masked inputs ----------------------------------------------------------------
    def _add_masked(self, message: MaskedInput) -> None:
        if message.vector.shape != self._total.shape or message.vector.dtype != self._total.dtype:
            raise ProtocolError(f"the masked input of {message.node!r} has the wrong shape or width")
        if (self.config.researcher is None) != (not message.pad):
            raise ProtocolError(f"the masked input of {message.node!r} lacks its sealed output pad")
        self._total += message.vector

    def _close_masked(self) -> Outbox:
        received: dict[str, MaskedInput] = self._take()
        self._survivors = tuple(sorted(received))
        self._dropped = tuple(sorted(set(self._dealt) - received.keys()))
        self._pads = {node: m.pad for node, m in received.items() if m.pad}
        self._active &= set(received)  # a node may have left right after sending its input
        if not self.config.masked:
            return self._finish(sorted(self._active))
        if len(received) < self.config.threshold:
            # Not enough to reconstruct anything: abort before a single share is revealed.
            return self._fail(
                f"only {len(received)} of {len(self.config.nodes)} nodes sent a masked input; "
                f"the threshold is {self.config.threshold}"
            )
        self.stage = ServerStage.UNMASK
        note = Survivors(self._survivors, self._dropped)
        return [(node, note) for node in sorted(self._active)]

    # 3. unmask -----------------------------------------------------------------------
    def _close_unmask(self) -> Outbox:
        answers: dict[str, Unmask] = self._take()
        bits, length = self.config.bits, self.config.length
        try:
            for u in self._survivors:
                seed = self._reconstruct(u, answers, lambda m, who: m.self_shares.get(who))
                self._total -= expand_mask(seed, length, bits=bits)
            for u in self._dropped:
                key = MaskKey(self._reconstruct(u, answers, lambda m, who: m.key_shares.get(who)))
                for v in sorted(self.config.neighbours(u) & set(self._survivors)):
                    pair = expand_mask(
                        key.pair_seed(self._adverts[v].mask_key, self.config.pair_context(u, v)),
                        length,
                        bits=bits,
                    )
                    # v added +pair when v < u, else -pair: take out what v put in.
                    if v < u:
                        self._total -= pair
                    else:
                        self._total += pair
        except ProtocolError as exc:
            return self._fail(str(exc))
        return self._finish(sorted(answers))

    def _finish(self, recipients: list[str]) -> Outbox:
        self.stage = ServerStage.DONE
        self.outcome = AggregateOutcome(
            self.config.session, self._total, self._survivors, self._dropped, dict(self._pads)
        )
        done = Finished(self._survivors)
        return [(node, done) for node in recipients]

    def _reconstruct(
        self, owner: str, answers: dict[str, Unmask], pick: Callable[[Unmask, str], Any]
    ) -> bytes:
        shares: list[Share] = []
        for holder in sorted(self.config.holders(owner) & answers.keys()):
            data = pick(answers[holder], owner)
            if data is not None:
                try:
                    shares.append(Share.from_bytes(data))
                except CryptoError as exc:
                    raise ProtocolError(f"{holder!r} sent a malformed share of {owner!r}: {exc}") from None
        if len(shares) < self.config.threshold:
            raise ProtocolError(
                f"only {len(shares)} of {owner!r}'s share holders answered the unmask request; "
                f"{self.config.threshold} are needed"
            )
        try:
            return combine(shares, _SEED, threshold=self.config.threshold)
        except CryptoError as exc:
            raise ProtocolError(f"the shares of {owner!r} do not reconstruct: {exc}") from None

    # helpers -------------------------------------------------------------------------
    def _take(self) -> dict[str, Any]:
        taken, self._inbox = self._inbox, {}
        return taken

    def _too_few(self, what: str) -> Outbox:
        return self._fail(
            f"only {len(self._active)} of {len(self.config.nodes)} nodes {what}; "
            f"the threshold is {self.config.threshold}"
        )

    def _fail(self, reason: str) -> Outbox:
        self.stage = ServerStage.FAILED
        self.error = f"secure aggregation {self.config.session} failed: {reason}"
        self._total[:] = 0
        abort = Abort(self.error)
        return [(node, abort) for node in sorted(self._active)]
