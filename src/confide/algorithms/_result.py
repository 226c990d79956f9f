"""What an algorithm's researcher half returns, and how any front end shows it without knowing it.

``Algorithm.finalise`` returns a :class:`Finalised`: titled tables of formatted cells (``tables``), a few
lines saying how it was computed (who was summed, what was withheld, the privacy spent),
the nodes that sat out and why, and a JSON form. The CLI renders every algorithm's result
through these four, so a new algorithm needs no new printing code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Finalised", "ResultTable", "withheld_note"]


@dataclass(frozen=True)
class ResultTable:
    """A finalised result as a titled table of formatted cells."""

    title: str
    headers: list[str]
    rows: list[list[str]]


@runtime_checkable
class Finalised(Protocol):
    """A result finalised at the researcher: tables, notes, who sat out, and JSON."""

    @property
    def sat_out(self) -> Mapping[str, str]:
        """Nodes that did not contribute, each with its own reason."""
        ...

    @property
    def tables(self) -> list[ResultTable]:
        """The result as tables of formatted cells."""
        ...

    def notes(self) -> list[str]:
        """Lines shown under the tables: how the result was computed and what was withheld."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-able data."""
        ...


def withheld_note(cells: Sequence[str], shown: int = 10) -> str:
    """The note on cells withheld at some nodes: which, never how many rows."""
    listed = "; ".join(cells[:shown]) + (f"; and {len(cells) - shown} more" if len(cells) > shown else "")
    return (
        f"withheld at some nodes (fewer than the node's min_count rows there; the figures count only "
        f"the other nodes): {listed}"
    )
