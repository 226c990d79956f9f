"""Reading the ``seed.json`` that ``confide provision`` writes into the hub's store records."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from confide._errors import ConfigError
from confide.hub._records import Collaboration, NodeRecord, Organisation, ResearcherRecord, SeedData
from confide.kit import load_model

__all__ = ["load_seed"]


class _Org(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str


class _Party(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    organisation: str
    token_hash: str
    certificate: str


class _Collab(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    nodes: list[str]
    researchers: list[str]


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisations: list[_Org]
    nodes: list[_Party]
    researchers: list[_Party]
    collaborations: list[_Collab]


def load_seed(path: Path) -> SeedData:
    """Parse a seed file into :class:`SeedData`."""
    seed = load_model(path, _Seed, "hub seed")
    try:
        return SeedData(
            organisations=tuple(Organisation(o.id, o.name) for o in seed.organisations),
            nodes=tuple(
                NodeRecord(
                    p.id,
                    p.organisation,
                    p.token_hash,
                    base64.b64decode(p.certificate, validate=True),
                )
                for p in seed.nodes
            ),
            researchers=tuple(
                ResearcherRecord(
                    p.id,
                    p.organisation,
                    p.token_hash,
                    base64.b64decode(p.certificate, validate=True),
                )
                for p in seed.researchers
            ),
            collaborations=tuple(
                Collaboration(c.id, c.name, tuple(c.nodes), tuple(c.researchers)) for c in seed.collaborations
            ),
        )
    except binascii.Error:
        raise ConfigError(
            f"hub seed file {path}: a certificate is not valid base64; re-run provision"
        ) from None
