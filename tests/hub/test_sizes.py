"""What the hub stores of a result tells it a size bucket, not the length of what the node found."""

from __future__ import annotations

import base64
import struct

from confide.crypto import SIGNATURE_SIZE
from confide.wire import Envelope, Flags, padded_size
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium

HPKE_OVERHEAD = 32 + 16  # encapsulated X25519 key and the AES-GCM tag


def test_every_sealed_result_the_hub_holds_is_padded_to_a_bucket(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=60)
        rows = client._request("GET", f"/api/tasks/{results.task_id}/results")

    assert len(rows) == 3
    for row in rows:
        envelope = Envelope.decode(base64.b64decode(row["envelope"]))
        (clen,) = struct.unpack_from(">I", envelope.body)
        plaintext = clen - HPKE_OVERHEAD
        assert envelope.flags & Flags.PADDED
        assert len(envelope.body) == 4 + clen + SIGNATURE_SIZE
        assert padded_size(plaintext) == plaintext  # a bucket, whatever the summary's digits
