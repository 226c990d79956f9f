"""A node's side of secure aggregation: only synthetic diagnostics may run unmasked."""

from __future__ import annotations

import numpy as np
import pytest

from confide._errors import ProtocolError
from confide.crypto import MemoryReplayGuard, PartyIdentity, Role
from confide.node._peers import TaskPeers
from confide.wire import Envelope


async def _no_frames(envelope: Envelope) -> None:
    raise AssertionError("nothing may be sent")


def _peers(algorithm: str) -> TaskPeers:
    me = PartyIdentity.generate("node-a", "org-a", Role.NODE)
    other = PartyIdentity.generate("node-b", "org-b", Role.NODE)
    researcher = PartyIdentity.generate("alice", "uni", Role.RESEARCHER)
    return TaskPeers(
        task_id="t1",
        identity=me,
        peers={"node-b": other.public},
        algorithm=algorithm,
        run_local=None,  # type: ignore[arg-type]
        send_frame=None,  # type: ignore[arg-type]
        guard=MemoryReplayGuard(),
        researcher=researcher.public,
        send_now=_no_frames,
    )


async def test_an_algorithm_on_patient_data_cannot_ask_for_an_unmasked_round() -> None:
    peers = _peers("stats.moments")

    with pytest.raises(ProtocolError, match="asked for an unmasked round"):
        await peers.secure_sum(np.zeros(4, np.uint64), masked=False)
