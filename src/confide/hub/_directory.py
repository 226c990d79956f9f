"""The consortium directory, cached in memory: credentials, keys, studies, memberships.

The directory changes only when the hub imports its seed at start, so answers from the
store are kept for the life of the process and authentication and membership checks
cost no database round trip after the first. A lookup that finds nothing (an unknown
token) is not kept and goes to the store every time; memberships are kept as found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from confide.hub._records import Collaboration, NodeRecord, ResearcherRecord
from confide.hub._store import Store

__all__ = ["Directory"]

V = TypeVar("V")


class Directory:
    """A read-through cache over the directory part of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._nodes: dict[str, NodeRecord] = {}
        self._researchers: dict[str, ResearcherRecord] = {}
        self._certificates: dict[str, bytes] = {}
        self._collaborations: dict[str, Collaboration] = {}
        self._memberships: dict[str, list[Collaboration]] = {}

    def clear(self) -> None:
        """Forget everything (after a seed import)."""
        for cache in (
            self._nodes,
            self._researchers,
            self._certificates,
            self._collaborations,
            self._memberships,
        ):
            cache.clear()

    async def researcher_by_token_hash(self, token_hash: str) -> ResearcherRecord | None:
        """The researcher whose token hashes to ``token_hash``."""
        return await _through(self._researchers, token_hash, self._store.researcher_by_token_hash)

    async def node_by_token_hash(self, token_hash: str) -> NodeRecord | None:
        """The node whose token hashes to ``token_hash``."""
        return await _through(self._nodes, token_hash, self._store.node_by_token_hash)

    async def certificate(self, party_id: str) -> bytes | None:
        """A party's certificate (PEM)."""
        return await _through(self._certificates, party_id, self._store.party_certificate)

    async def collaboration(self, collaboration_id: str) -> Collaboration | None:
        """One collaboration."""
        return await _through(self._collaborations, collaboration_id, self._store.collaboration)

    async def collaborations_of(self, party_id: str) -> list[Collaboration]:
        """Collaborations ``party_id`` belongs to, by id."""
        found: list[Collaboration] | None = await _through(
            self._memberships, party_id, self._store.collaborations_of
        )
        return list(found or [])


async def _through(cache: dict[str, V], key: str, load: Callable[[str], Awaitable[V | None]]) -> V | None:
    """``cache[key]``, loading and keeping it on a miss; a miss that loads nothing is not kept."""
    found = cache.get(key)
    if found is None:
        found = await load(key)
        if found is not None:
            cache[key] = found
    return found
