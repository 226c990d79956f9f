"""The researcher accepts a round's total only for the round the task declared (a hostile hub)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from confide._errors import WireError
from confide.algorithms import SecureRound
from confide.client import SecureSum
from confide.client._client import _check_round
from confide.crypto import FixedPoint

NODES = ["node-a", "node-b", "node-c"]
DECLARED = SecureRound("stat", 4, FixedPoint(1, 1000.0, 3, 32))
HONEST = SecureSum("t1", "stat", np.zeros(4, np.uint32), tuple(NODES), (), 32, tuple(NODES), True)


def test_the_declared_round_is_accepted() -> None:
    _check_round(HONEST, DECLARED, NODES)


@pytest.mark.parametrize(
    "forged",
    [
        {"masked": False},  # the hub sums in the clear and names the total
        {"total": np.zeros(5, np.uint32)},
        {"bits": 64},
        {"nodes": ("node-a", "node-b")},  # a node left out of the round's configuration
    ],
)
def test_a_round_other_than_the_declared_one_is_refused(forged: dict[str, object]) -> None:
    with pytest.raises(WireError, match="a round other than the task declared"):
        _check_round(dataclasses.replace(HONEST, **forged), DECLARED, NODES)  # type: ignore[arg-type]
