"""The researcher's last step: remove the survivors' output pads from the padded sum.

Each node adds ``PRG(p_u)`` to its masked input and seals ``p_u`` to the researcher
(HPKE to the researcher's certified key, signed by the node, bound to the round and the
node), so the server's total is ``sum (x_u + PRG(p_u))`` over the survivors: uniformly
random to anyone without the pads. Only the researcher opens the seeds and subtracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import CryptoError, ProtocolError
from confide.crypto import SEED_SIZE, PartyIdentity, PublicParty, expand_mask, open_bound
from confide.protocols.secagg._client import pad_header, sealed_from_bytes
from confide.protocols.secagg._config import SecAggConfig

__all__ = ["remove_pads"]


def remove_pads(
    config: SecAggConfig,
    total: npt.NDArray[np.unsignedinteger[Any]],
    survivors: tuple[str, ...],
    pads: Mapping[str, bytes],
    *,
    me: PartyIdentity,
    parties: Mapping[str, PublicParty],
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The plain sum of the survivors' inputs, from the server's padded total.

    Raises
    ------
    ProtocolError
        If a survivor's pad is missing or does not open (not sealed to ``me``, not
        signed by that node, or for another round): the sum cannot be trusted.
    """
    if config.researcher != me.party_id:
        raise ProtocolError(
            f"round {config.session} pads its output for {config.researcher!r}, not {me.party_id!r}"
        )
    if set(pads) != set(survivors):
        raise ProtocolError(
            f"round {config.session}: pads for {sorted(pads)} but survivors {sorted(survivors)}; "
            "the server's answer is inconsistent"
        )
    plain = np.array(total, dtype=np.dtype(f"u{config.bits // 8}"), copy=True)
    for node in survivors:
        party = parties.get(node)
        if party is None:
            raise ProtocolError(f"round {config.session}: no certificate for survivor {node!r}")
        try:
            seed = open_bound(
                sealed_from_bytes(pads[node]), header=pad_header(config, node), me=me, sender=party
            )
        except CryptoError as exc:
            raise ProtocolError(f"round {config.session}: the pad of {node!r} does not open: {exc}") from None
        if len(seed) != SEED_SIZE:
            raise ProtocolError(f"round {config.session}: the pad of {node!r} is not a {SEED_SIZE}-byte seed")
        plain -= expand_mask(seed, config.length, bits=config.bits)
    return plain
