"""One secure-aggregation round's public configuration, and its neighbour graph.

Everything here is public: the hub, acting as the server, and every node compute the
same values from the same configuration, and each node signs the configuration's digest
with its key advertisement, so a server that tells two nodes different stories is caught
in the first stage.

The graph is Bonawitz et al.'s complete graph for small rounds and, for large ones, the
sparse graph of SecAgg+ (Bell et al., "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", CCS 2020): a Harary graph of even degree ``k`` over the
nodes in a pseudorandom order derived from the session id. Each node then masks with,
and deals shares to, only its ``k`` neighbours, so a node's work grows with ``log n``
rather than ``n``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property

from confide._errors import ProtocolError

__all__ = ["FULL_GRAPH_MAX", "SecAggConfig"]

FULL_GRAPH_MAX = 32  # rounds up to this many nodes use the complete graph


@dataclass(frozen=True)
class SecAggConfig:
    """The public parameters of one round.

    Parameters
    ----------
    session
        Unique name of the round (``task id/round``): binds keys, seeds and shares to it.
    nodes
        The nodes asked to take part, sorted.
    length
        Elements of every node's vector.
    bits
        Width of the ring Z_(2^bits): 32 or 64 (see :func:`confide.crypto.min_bits`).
    threshold
        ``t``: shares needed to recover a secret; the round completes while at least
        ``t`` nodes survive (and, in a sparse graph, ``t`` of each node's neighbourhood).
    degree
        Neighbours per node: ``n - 1`` is the complete graph.
    researcher
        Who may remove the output pads; ``None`` leaves the sum unpadded for the server.
    masked
        ``False`` runs an *unmasked* round: every node sends its vector in the clear to the
        server, which sums it. It exists as the baseline that secure aggregation is
        measured against, and nodes allow it only for synthetic diagnostics vectors.
    """

    session: str
    nodes: tuple[str, ...]
    length: int
    bits: int = 64
    threshold: int = 0
    degree: int = 0
    researcher: str | None = None
    masked: bool = True
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    @classmethod
    def create(
        cls,
        session: str,
        nodes: list[str] | tuple[str, ...],
        length: int,
        *,
        bits: int = 64,
        threshold: int | None = None,
        degree: int | None = None,
        researcher: str | None = None,
        masked: bool = True,
    ) -> SecAggConfig:
        """A configuration with the default degree and threshold filled in.

        The default degree is ``n - 1`` up to :data:`FULL_GRAPH_MAX` nodes, else the even
        number nearest ``3 log2 n`` (at least 8); the default threshold is a strict
        majority of a neighbourhood (``floor((k + 1) / 2) + 1``), the smallest value at
        which two disjoint groups of survivors can never both reconstruct.
        """
        ordered = tuple(sorted(nodes))
        n = len(ordered)
        if degree is None:
            degree = n - 1 if n <= FULL_GRAPH_MAX else min(n - 1, max(8, 2 * math.ceil(1.5 * math.log2(n))))
        if threshold is None:
            threshold = (degree + 1) // 2 + 1 if n > 2 else n
        return cls(session, ordered, length, bits, threshold, degree, researcher, masked)

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if not self.session:
            raise ProtocolError("a secure-aggregation round needs a session name")
        if n < 2:
            raise ProtocolError(f"secure aggregation needs at least 2 nodes, not {n}")
        if tuple(sorted(set(self.nodes))) != self.nodes:
            raise ProtocolError("the nodes of a round must be distinct and sorted")
        if self.length < 1:
            raise ProtocolError(f"the vector length must be at least 1, not {self.length}")
        if self.bits not in (32, 64):
            raise ProtocolError(f"vectors are summed in Z_2^32 or Z_2^64, not Z_2^{self.bits}")
        if not 1 <= self.degree <= n - 1 or (self.degree < n - 1 and self.degree % 2):
            raise ProtocolError(
                f"degree {self.degree} is impossible for {n} nodes: use n - 1 = {n - 1} (complete graph) "
                "or an even number below it"
            )
        if not (self.degree + 1) // 2 < self.threshold <= self.degree + 1 and not (
            n == 2 and self.threshold == 2
        ):
            raise ProtocolError(
                f"threshold {self.threshold} must be a strict majority of a neighbourhood of "
                f"{self.degree + 1} nodes: between {(self.degree + 1) // 2 + 1} and {self.degree + 1}"
            )
        if not self.masked and self.researcher is not None:
            raise ProtocolError("an unmasked round has no output pads: its researcher must be None")
        ranked = sorted(
            self.nodes, key=lambda node: hashlib.sha256(f"{self.session}\0{node}".encode()).digest()
        )
        object.__setattr__(self, "_order", tuple(ranked))

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the canonical configuration; every node signs it."""
        fields = {
            "session": self.session,
            "nodes": list(self.nodes),
            "length": self.length,
            "bits": self.bits,
            "threshold": self.threshold,
            "degree": self.degree,
            "researcher": self.researcher,
            "masked": self.masked,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()

    @cached_property
    def _neighbours(self) -> dict[str, frozenset[str]]:
        n = len(self._order)
        if self.degree == n - 1:
            return {node: frozenset(self.nodes) - {node} for node in self.nodes}
        half = self.degree // 2
        return {
            node: frozenset(self._order[(i + j) % n] for j in range(-half, half + 1) if j)
            for i, node in enumerate(self._order)
        }

    def neighbours(self, node: str) -> frozenset[str]:
        """The nodes ``node`` masks with and deals shares to (never itself)."""
        try:
            return self._neighbours[node]
        except KeyError:
            raise ProtocolError(f"{node!r} is not a node of round {self.session}") from None

    def holders(self, node: str) -> frozenset[str]:
        """Who holds shares of ``node``'s secrets: its neighbours and itself."""
        return self.neighbours(node) | {node}

    def x_of(self, node: str) -> int:
        """The Shamir evaluation point of ``node`` (its position among the nodes, from 1)."""
        return self.nodes.index(node) + 1

    def pair_context(self, a: str, b: str) -> bytes:
        """The HKDF context of the pairwise seed of ``a`` and ``b`` (same for both ends)."""
        low, high = sorted((a, b))
        return f"{self.session}\0{low}\0{high}".encode()
