"""The consortium directory, cached in memory: credentials, keys, studies, memberships.

The directory changes only when the hub imports its seed at start, so answers from the
store are kept for the life of the process and authentication and membership checks
cost no database round trip after the first. Misses (an unknown token) always go to the
store, so a party added by a later seed import is found.
"""

from __future__ import annotations

from confide.hub._records import Collaboration, NodeRecord, ResearcherRecord
from confide.hub._store import Store

__all__ = ["Directory"]


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
        found = self._researchers.get(token_hash)
        if found is None:
            found = await self._store.researcher_by_token_hash(token_hash)
            if found is not None:
                self._researchers[token_hash] = found
        return found

    async def node_by_token_hash(self, token_hash: str) -> NodeRecord | None:
        """The node whose token hashes to ``token_hash``."""
        found = self._nodes.get(token_hash)
        if found is None:
            found = await self._store.node_by_token_hash(token_hash)
            if found is not None:
                self._nodes[token_hash] = found
        return found

    async def certificate(self, party_id: str) -> bytes | None:
        """A party's certificate (PEM)."""
        found = self._certificates.get(party_id)
        if found is None:
            found = await self._store.party_certificate(party_id)
            if found is not None:
                self._certificates[party_id] = found
        return found

    async def collaboration(self, collaboration_id: str) -> Collaboration | None:
        """One collaboration."""
        found = self._collaborations.get(collaboration_id)
        if found is None:
            found = await self._store.collaboration(collaboration_id)
            if found is not None:
                self._collaborations[collaboration_id] = found
        return found

    async def collaborations_of(self, party_id: str) -> list[Collaboration]:
        """Collaborations ``party_id`` belongs to, by id."""
        found = self._memberships.get(party_id)
        if found is None:
            found = await self._store.collaborations_of(party_id)
            self._memberships[party_id] = found
        return list(found)
