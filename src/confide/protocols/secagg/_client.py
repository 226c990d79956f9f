"""The node's side of secure aggregation, as a pure state machine.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(CCS 2017), Figure 4, with the neighbour graph of SecAgg+ (Bell et al., CCS 2020) and
one addition for output privacy. The client never does I/O: :meth:`SecAggClient.start`
gives its first message and :meth:`SecAggClient.handle` turns each server message into
the next, one handler per :class:`ClientStage`.

Steps, as numbered in the code:

0. *Advertise keys*: a fresh X25519 mask key, signed with the node's certified Ed25519
   identity key over the round's configuration digest.
1. *Share keys*: check every neighbour's signed advertisement against its certificate;
   draw the self-mask seed ``b_u``; Shamir-share ``b_u`` and the mask private key
   among the neighbourhood (threshold ``t``), each share sealed (HPKE + signature) to
   its holder's certified key, bound to session, sender and holder.
2. *Masked input*: ``y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv) + PRG(p_u)`` in Z_2^bits,
   over the neighbours ``v`` that dealt shares (``+`` when ``u < v``); ``p_u`` is the
   output pad, whose seed goes sealed to the researcher so the server only ever sums
   padded vectors.
3. *Unmask*: for each survivor, its share of ``b``; for each dropped neighbour, its
   share of the mask key. Never both for one node: that would unmask its input.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import CryptoError, ProtocolError
from confide.crypto import (
    SEED_SIZE,
    SHARE_SIZE,
    MaskKey,
    PartyIdentity,
    PublicParty,
    SealedBody,
    Share,
    expand_mask,
    open_bound,
    seal,
    split,
)
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
)

__all__ = ["ClientStage", "Contribution", "SecAggClient", "advert_payload", "pad_header", "share_header"]

_SIGNATURE = 64


class ClientStage(enum.Enum):
    """What the client waits for next."""

    NEW = "new"
    KEYS = "keys"
    SHARES = "shares"
    SURVIVORS = "survivors"
    FINISHED = "finished"
    DONE = "done"


@dataclass(frozen=True)
class Contribution:
    """What a node knows when its round is over: who was summed, and whether it was."""

    session: str
    survivors: tuple[str, ...]
    included: bool
    bytes_sent: int = 0
    bytes_received: int = 0


def advert_payload(config: SecAggConfig, node: str, mask_key: bytes) -> bytes:
    """What a node signs when it advertises its mask key."""
    return b"confide-secagg-advert-v1\0" + f"{config.session}\0{node}\0".encode() + mask_key + config.digest


def share_header(config: SecAggConfig, dealer: str, holder: str) -> bytes:
    """HPKE info of a share: binds the round, the dealer and the holder."""
    return f"confide-secagg-share-v1\0{config.session}\0{dealer}\0{holder}".encode()


def pad_header(config: SecAggConfig, node: str) -> bytes:
    """HPKE info of an output-pad seed sealed to the researcher."""
    return f"confide-secagg-pad-v1\0{config.session}\0{node}\0{config.researcher}".encode()


def seal_to_bytes(body: SealedBody) -> bytes:
    """A sealed body as one byte string: signature, then ciphertext."""
    return body.signature + body.ciphertext


def sealed_from_bytes(data: bytes) -> SealedBody:
    """The inverse of :func:`seal_to_bytes`."""
    if len(data) <= _SIGNATURE:
        raise ProtocolError(f"a sealed protocol body is longer than {_SIGNATURE} bytes, not {len(data)}")
    return SealedBody(ciphertext=data[_SIGNATURE:], signature=data[:_SIGNATURE])


class SecAggClient:
    """One node in one round.

    Parameters
    ----------
    config
        The round.
    identity
        This node's keys (signs the advertisement and the sealed shares).
    parties
        Certified public identities of the other nodes of the round and, when the
        round pads its output, of the researcher; checked against the consortium CA
        by the caller.
    values
        This node's input, already encoded in Z_2^bits (``uint32`` or ``uint64``).
    """

    def __init__(
        self,
        config: SecAggConfig,
        identity: PartyIdentity,
        parties: Mapping[str, PublicParty],
        values: npt.NDArray[np.unsignedinteger[Any]],
    ) -> None:
        self.config = config
        self.node = identity.party_id
        dtype = np.dtype(f"u{config.bits // 8}")
        if values.dtype != dtype or values.shape != (config.length,):
            raise ProtocolError(
                f"{self.node}: the input must be {config.length} values of dtype {dtype}, "
                f"not {values.shape} of {values.dtype}"
            )
        if config.researcher is not None and config.researcher not in parties:
            raise ProtocolError(f"{self.node}: no certificate for researcher {config.researcher!r}")
        self._neighbours = config.neighbours(self.node)
        self._identity = identity
        self._parties = dict(parties)
        self._values = values
        self._mask_key = MaskKey.generate()
        self._self_seed = secrets.token_bytes(SEED_SIZE)
        self._keyed: dict[str, bytes] = {}  # neighbour -> its advertised mask key
        self._held: dict[str, tuple[Share, Share]] = {}  # dealer -> (share of b, share of key)
        self._dealers: frozenset[str] = frozenset()
        self._premasked: tuple[npt.NDArray[np.unsignedinteger[Any]], frozenset[str]] | None = None
        self._sealed_pad = b""
        self.stage = ClientStage.NEW
        self.contribution: Contribution | None = None
        self._handlers: dict[ClientStage, Callable[[Any], ClientMessage | None]] = {
            ClientStage.KEYS: self._share_keys,
            ClientStage.SHARES: self._masked_input,
            ClientStage.SURVIVORS: self._unmask,
            ClientStage.FINISHED: self._finish,
        }
        self._expected: dict[ClientStage, type] = {
            ClientStage.KEYS: Keys,
            ClientStage.SHARES: Shares,
            ClientStage.SURVIVORS: Survivors,
            ClientStage.FINISHED: Finished,
        }

    def start(self) -> ClientMessage:
        """Step 0: the signed advertisement of this round's mask key.

        In an unmasked round (the baseline) the input itself, in the clear.
        """
        if self.stage is not ClientStage.NEW:
            raise ProtocolError(f"{self.node}: round {self.config.session} has started already")
        if not self.config.masked:
            self.stage = ClientStage.FINISHED
            return MaskedInput(self.node, self._values.copy(), b"")
        self.stage = ClientStage.KEYS
        mask_key = self._mask_key.public
        signature = self._identity.sign(advert_payload(self.config, self.node, mask_key))
        return Advertise(self.node, mask_key, self.config.digest, signature)

    def handle(self, message: ServerMessage) -> ClientMessage | None:
        """The reply to one server message (``None`` when the round is over).

        Raises
        ------
        ProtocolError
            On an abort, a message out of turn, or a server or neighbour that breaks
            the protocol; the round is then over for this node.
        """
        if isinstance(message, Abort):
            self.stage = ClientStage.DONE
            raise ProtocolError(f"round {self.config.session} was aborted: {message.reason}")
        expected = self._expected.get(self.stage)
        if expected is None or not isinstance(message, expected):
            raise ProtocolError(
                f"{self.node}: got {type(message).__name__} while at stage {self.stage.value} "
                f"of round {self.config.session}"
            )
        return self._handlers[self.stage](message)

    # 1. Share keys ---------------------------------------------------------------
    def _share_keys(self, message: Keys) -> ShareKeys:
        for advert in message.adverts:
            self._check_advert(advert)
        holders = sorted({*self._keyed, self.node})
        if len(holders) < self.config.threshold:
            raise ProtocolError(
                f"{self.node}: only {len(holders) - 1} of its neighbours advertised keys; "
                f"{self.config.threshold - 1} are needed to share its secrets"
            )
        xs = [self.config.x_of(h) for h in holders]
        seed_shares = split(self._self_seed, self.config.threshold, xs)
        key_shares = split(self._mask_key.private, self.config.threshold, xs)
        sealed: dict[str, bytes] = {}
        for holder, b_share, k_share in zip(holders, seed_shares, key_shares, strict=True):
            if holder == self.node:
                self._held[self.node] = (b_share, k_share)
                continue
            body = seal(
                b_share.to_bytes() + k_share.to_bytes(),
                header=share_header(self.config, self.node, holder),
                sender=self._identity,
                recipient=self._parties[holder],
            )
            sealed[holder] = seal_to_bytes(body)
        self.stage = ClientStage.SHARES
        return ShareKeys(self.node, sealed)

    def _check_advert(self, advert: Advertise) -> None:
        if advert.node not in self._neighbours or advert.node in self._keyed:
            raise ProtocolError(
                f"{self.node}: the server relayed an unexpected advertisement of {advert.node!r}"
            )
        party = self._parties.get(advert.node)
        payload = advert_payload(self.config, advert.node, advert.mask_key)
        if (
            party is None
            or advert.digest != self.config.digest
            or not party.verifies(advert.signature, payload)
        ):
            raise ProtocolError(
                f"{self.node}: the key advertisement of {advert.node!r} is not signed by its certified key "
                "for this round's configuration; refusing to continue"
            )
        self._keyed[advert.node] = advert.mask_key

    # 2. Masked input ---------------------------------------------------------------
    def _masked_input(self, message: Shares) -> MaskedInput:
        for dealer, data in message.sealed.items():
            if dealer not in self._keyed:
                raise ProtocolError(
                    f"{self.node}: the server relayed shares from {dealer!r}, which it never keyed"
                )
            self._held[dealer] = self._open_shares(dealer, data)
        self._dealers = frozenset(message.sealed)
        if self._premasked is None:
            self.prepare_masks()
        masked, masked_with = self._premasked  # type: ignore[misc]
        # Masks made ahead for neighbours that then did not deal come off again: the
        # server cancels pairwise masks only with nodes in U2.
        for peer in sorted(masked_with - self._dealers):
            self._apply_pair(masked, peer, sign=-1)
        self._premasked = None
        self.stage = ClientStage.SURVIVORS
        return MaskedInput(self.node, masked, self._sealed_pad)

    def prepare_masks(self) -> None:
        """Expand every mask ahead of step 2, while the server gathers the shares.

        Optional (step 2 does it otherwise); a driver may run it in a thread right after
        sending the shares, so the expensive AES-CTR work overlaps the round trip. Masks
        with every keyed neighbour are added; those that turn out not to deal are taken
        off again in step 2.
        """
        if self.stage is not ClientStage.SHARES or self._premasked is not None:
            return
        bits, length = self.config.bits, self.config.length
        masked = self._values + expand_mask(self._self_seed, length, bits=bits)
        for peer in sorted(self._keyed):
            self._apply_pair(masked, peer, sign=1)
        if self.config.researcher is not None:
            pad_seed = secrets.token_bytes(SEED_SIZE)
            masked += expand_mask(pad_seed, length, bits=bits)
            body = seal(
                pad_seed,
                header=pad_header(self.config, self.node),
                sender=self._identity,
                recipient=self._parties[self.config.researcher],
            )
            self._sealed_pad = seal_to_bytes(body)
        self._premasked = (masked, frozenset(self._keyed))

    def _apply_pair(self, masked: npt.NDArray[np.unsignedinteger[Any]], peer: str, *, sign: int) -> None:
        pair = expand_mask(self._pair_seed(peer), self.config.length, bits=self.config.bits)
        if (self.node < peer) == (sign > 0):
            masked += pair
        else:
            masked -= pair

    def _open_shares(self, dealer: str, data: bytes) -> tuple[Share, Share]:
        try:
            plaintext = open_bound(
                sealed_from_bytes(data),
                header=share_header(self.config, dealer, self.node),
                me=self._identity,
                sender=self._parties[dealer],
            )
            if len(plaintext) != 2 * SHARE_SIZE:
                raise CryptoError(f"{len(plaintext)} bytes instead of {2 * SHARE_SIZE}")
            pair = Share.from_bytes(plaintext[:SHARE_SIZE]), Share.from_bytes(plaintext[SHARE_SIZE:])
        except CryptoError as exc:
            raise ProtocolError(f"{self.node}: the shares from {dealer!r} do not open: {exc}") from None
        if pair[0].x != self.config.x_of(self.node) or pair[1].x != pair[0].x:
            raise ProtocolError(f"{self.node}: {dealer!r} dealt it shares for another holder")
        return pair

    def _pair_seed(self, peer: str) -> bytes:
        return self._mask_key.pair_seed(self._keyed[peer], self.config.pair_context(self.node, peer))

    # 3. Unmask ---------------------------------------------------------------------
    def _unmask(self, message: Survivors) -> Unmask:
        survivors, dropped = set(message.survivors), set(message.dropped)
        if survivors & dropped:
            raise ProtocolError(
                f"{self.node}: the server called {sorted(survivors & dropped)} both survivors and dropped "
                "(revealing both shares would unmask their inputs); refusing"
            )
        if self.node not in survivors or len(survivors) < self.config.threshold:
            raise ProtocolError(
                f"{self.node}: {len(survivors)} survivors is below the threshold {self.config.threshold}; "
                "refusing to unmask"
            )
        unknown = (survivors | dropped) - set(self.config.nodes)
        if unknown:
            raise ProtocolError(f"{self.node}: the server named unknown nodes {sorted(unknown)}")
        self_shares = {n: self._held[n][0].to_bytes() for n in sorted(survivors & self._held.keys())}
        key_shares = {
            n: self._held[n][1].to_bytes() for n in sorted(dropped & self._dealers) if n != self.node
        }
        self._survivors = tuple(sorted(survivors))
        self.stage = ClientStage.FINISHED
        return Unmask(self.node, self_shares, key_shares)

    def _finish(self, message: Finished) -> None:
        self.stage = ClientStage.DONE
        self.contribution = Contribution(
            self.config.session, message.survivors, self.node in message.survivors
        )
        return None
