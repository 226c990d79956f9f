from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from confide.crypto import PartyIdentity, PublicParty, Role
from confide.protocols.secagg import SecAggClient, SecAggConfig

RESEARCHER = PartyIdentity.generate("alice", "uni", Role.RESEARCHER)
_IDENTITIES: dict[str, PartyIdentity] = {}


def identity(node: str) -> PartyIdentity:
    if node not in _IDENTITIES:
        _IDENTITIES[node] = PartyIdentity.generate(node, f"org-{node}", Role.NODE)
    return _IDENTITIES[node]


def parties(nodes: tuple[str, ...]) -> dict[str, PublicParty]:
    found = {n: identity(n).public for n in nodes}
    found[RESEARCHER.party_id] = RESEARCHER.public
    return found


def make_clients(
    config: SecAggConfig, inputs: Mapping[str, npt.NDArray[np.unsignedinteger[Any]]]
) -> dict[str, SecAggClient]:
    everyone = parties(config.nodes)
    return {
        n: SecAggClient(config, identity(n), {k: v for k, v in everyone.items() if k != n}, inputs[n])
        for n in config.nodes
    }


@pytest.fixture
def clients_for() -> Callable[..., dict[str, SecAggClient]]:
    return make_clients
