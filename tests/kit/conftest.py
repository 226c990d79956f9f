"""A small consortium description and one provisioned output shared by the kit tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from confide.kit import provision

CONSORTIUM_YAML = """\
consortium: acme
hub:
  url: https://hub.acme.example:8443
  hostnames: [hub.acme.example, 10.0.0.5]
organisations:
  - {id: org-a, name: Hospital A}
  - {id: org-b}
  - {id: org-r, name: University}
nodes:
  - {id: node-a, organisation: org-a}
  - {id: node-b, organisation: org-b}
researchers:
  - {id: alice, organisation: org-r}
collaborations:
  - id: diabetes
    name: Diabetes study
    nodes: [node-a, node-b]
    researchers: [alice]
"""
NODES = ("node-a", "node-b")
RESEARCHERS = ("alice",)


def write_spec(directory: Path, text: str = CONSORTIUM_YAML, name: str = "consortium.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One provisioned consortium; tests must not modify it (copy a kit first)."""
    root = tmp_path_factory.mktemp("provisioned")
    return provision(write_spec(root), root / "kits")


@pytest.fixture
def kits(tmp_path: Path, provisioned: Path) -> Path:
    """A private copy of the provisioned output, free to modify."""
    return Path(shutil.copytree(provisioned, tmp_path / "kits"))
