"""The parties a researcher deals with: node keys checked against the consortium CA, and results opened.

Every node certificate the hub hands out is verified against the CA in the researcher's
own kit, and a party whose keys change between two answers is refused (a hub that
substitutes keys is caught). A result is opened only if it is sealed to this researcher,
signed by the node it is filed for, and bound to this task.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from pydantic import ValidationError

from confide._errors import AuthError, WireError
from confide.client._results import NodeResult
from confide.crypto import MemoryReplayGuard, PublicParty, Role, verify_party_certificate
from confide.kit import Kit
from confide.wire import Envelope, MessageKind, ResultOut, TaskOutcome, open_envelope

__all__ = ["RESULT_MAX_AGE_MS", "Parties"]

RESULT_MAX_AGE_MS = 30 * 24 * 3600 * 1000  # results may be fetched up to 30 days later


class Parties:
    """The verified keys of the parties this researcher has seen, and the results opened so far."""

    def __init__(self, kit: Kit) -> None:
        self._kit = kit
        self._known: dict[str, PublicParty] = {}
        self._verified_pems: dict[bytes, PublicParty] = {}
        # Results are bound to their task and node; re-reading one is legitimate, so opened
        # results are kept by envelope rather than refused as replays.
        self._opened: dict[bytes, NodeResult] = {}

    def known(self, party_id: str) -> PublicParty | None:
        """The keys already verified for ``party_id``, if any."""
        return self._known.get(party_id)

    def verified(self, party_id: str, pem: bytes, role: Role) -> PublicParty:
        """``pem`` checked against the CA as ``party_id`` in ``role``; AuthError if its keys changed."""
        party = self._verified_pems.get(pem)
        if party is None or party.party_id != party_id or party.role is not role:
            party = verify_party_certificate(pem, self._kit.ca, expected_id=party_id, expected_role=role)
            self._verified_pems[pem] = party
        known = self._known.get(party_id)
        if known is not None and known != party:
            raise AuthError(f"the hub now presents different keys for {party_id!r} than before; refusing")
        self._known[party_id] = party
        return party

    def open_result(self, task_id: str, row: ResultOut, key_of: Callable[[str], PublicParty]) -> NodeResult:
        """Open one node's sealed result (recipient, signature, task and node checked).

        ``key_of(node)`` gives the node's verified key, asked for only once the envelope's
        header has been checked.
        """
        node_id = row.node
        if not row.envelope:
            return NodeResult(
                node_id,
                False,
                None,
                f"node {node_id!r} refused the task before opening it (see the node's log)",
            )
        try:
            raw = base64.b64decode(row.envelope, validate=True)
        except binascii.Error:
            raise WireError(f"the result filed for {node_id!r} is not valid base64") from None
        opened = self._opened.get(raw)
        if opened is not None:
            return opened
        envelope = Envelope.decode(raw)
        if (
            envelope.sender != node_id
            or envelope.task_id != task_id
            or envelope.kind is not MessageKind.TASK_RESULT
        ):
            raise WireError(f"result filed for {node_id!r} is not that node's result for task {task_id}")
        plaintext = open_envelope(
            envelope,
            me=self._kit.identity,
            sender=key_of(node_id),
            guard=MemoryReplayGuard(),
            max_age_ms=RESULT_MAX_AGE_MS,
        )
        try:
            outcome = TaskOutcome.model_validate(json.loads(plaintext))
        except (ValidationError, ValueError):
            raise WireError(f"result from {node_id!r} is malformed") from None
        if outcome.node != node_id:
            raise WireError(f"result sealed by {node_id!r} claims to come from {outcome.node!r}")
        result = NodeResult(node_id, outcome.ok, outcome.output, outcome.error)
        self._opened[raw] = result
        return result
