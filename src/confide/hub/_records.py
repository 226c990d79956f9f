"""What the hub stores: frozen records of the directory, tasks, runs, results, mailbox, audit.

Sealed payloads (task inputs, results) are stored as the opaque envelope bytes the hub
received; nothing in these records is plaintext a party sealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confide.wire import RunStatus, TaskStatus

# The statuses are the wire's (nodes report them, researchers read them); the store
# modules import them from here with the records.
__all__ = [
    "AggregateRecord",
    "AuditEvent",
    "Collaboration",
    "MailboxMessage",
    "NodeRecord",
    "Organisation",
    "ResearcherRecord",
    "Result",
    "Run",
    "RunStatus",
    "SeedData",
    "Task",
    "TaskStatus",
]


@dataclass(frozen=True)
class Organisation:
    id: str
    name: str


@dataclass(frozen=True)
class NodeRecord:
    """A node: its organisation, the SHA-256 of its token, and its certificate (PEM)."""

    id: str
    organisation_id: str
    token_hash: str
    certificate_pem: bytes


@dataclass(frozen=True)
class ResearcherRecord:
    """A researcher: like a node, a token hash and a certificate."""

    id: str
    organisation_id: str
    token_hash: str
    certificate_pem: bytes


@dataclass(frozen=True)
class Collaboration:
    """A study: which nodes take part and which researchers may submit to them."""

    id: str
    name: str
    node_ids: tuple[str, ...]
    researcher_ids: tuple[str, ...]


@dataclass(frozen=True)
class SeedData:
    """The directory the hub is provisioned with; importing it twice changes nothing."""

    organisations: tuple[Organisation, ...] = ()
    nodes: tuple[NodeRecord, ...] = ()
    researchers: tuple[ResearcherRecord, ...] = ()
    collaborations: tuple[Collaboration, ...] = ()


@dataclass(frozen=True)
class Task:
    """A researcher's request to run one algorithm on the nodes of a collaboration."""

    id: str
    collaboration_id: str
    researcher_id: str
    algorithm: str
    created_ms: int


@dataclass(frozen=True)
class Run:
    """One node's part of a task, with the sealed input envelope addressed to it."""

    id: str
    task_id: str
    node_id: str
    status: RunStatus
    input_envelope: bytes
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class Result:
    """The sealed result envelope a node returned for a run."""

    run_id: str
    task_id: str
    node_id: str
    status: RunStatus
    envelope: bytes
    created_ms: int


@dataclass(frozen=True)
class MailboxMessage:
    """A sealed envelope waiting at the hub for its recipient (store-and-forward relay)."""

    id: str
    recipient: str
    sender: str
    task_id: str
    envelope: bytes
    created_ms: int
    expires_ms: int


@dataclass(frozen=True)
class AggregateRecord:
    """The server's end of one secure-aggregation round.

    ``meta`` is the JSON of a ``confide.wire.AggregateMeta`` (survivors, dropped, sealed
    pads, width, error); ``total`` is the padded sum, little-endian: only the researcher
    can remove the pads.
    """

    task_id: str
    session: str
    meta: str
    total: bytes
    created_ms: int


@dataclass(frozen=True)
class AuditEvent:
    """One recorded call: who did what to which target, and how it ended."""

    at_ms: int
    actor: str
    action: str
    target: str
    outcome: str
    detail: str = ""
    id: int | None = field(default=None, compare=False)
