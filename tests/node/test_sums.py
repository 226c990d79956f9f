"""A node's side of secure aggregation: only synthetic diagnostics may run unmasked."""

from __future__ import annotations

import numpy as np
import pytest

from confide._errors import ProtocolError
from confide.crypto import PartyIdentity, Role
from confide.node._sums import SecureSums
from confide.wire import Envelope


class _NoFrames:
    async def send_now(self, envelope: Envelope) -> None:
        raise AssertionError("nothing may be sent")

    async def drop(self) -> None:
        raise AssertionError("the link may not be dropped")


def _peers(algorithm: str) -> SecureSums:
    me = PartyIdentity.generate("node-a", "org-a", Role.NODE)
    other = PartyIdentity.generate("node-b", "org-b", Role.NODE)
    researcher = PartyIdentity.generate("alice", "uni", Role.RESEARCHER)
    return SecureSums(
        task_id="t1",
        algorithm=algorithm,
        identity=me,
        peers={"node-b": other.public},
        researcher=researcher.public,
        hub=_NoFrames(),
    )


async def test_an_algorithm_on_patient_data_cannot_ask_for_an_unmasked_round() -> None:
    peers = _peers("stats.moments")

    with pytest.raises(ProtocolError, match="asked for an unmasked round"):
        await peers.secure_sum(np.zeros(4, np.uint64), masked=False)
