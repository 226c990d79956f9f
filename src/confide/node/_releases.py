"""The release record: the rows behind every cell a node released without noise, and the differencing check.

Two releases whose row sets differ by a few rows give those rows' figures by subtraction:
the sum over patients aged 60 and over, minus the sum over those over 60, is the sum over
the patients aged exactly 60, and if there is one, it is that patient's value (issue 15,
finding 4). Every cell that leaves a node comes from at least ``min_count`` of its rows,
but two such cells can still differ by one. So before a release without differential
privacy leaves, the node compares the row set of each of its cells with that of every
cell it released earlier from the same table, and refuses if two differ by at least one
and fewer than ``min_count`` rows.

1. Keys: each row has a 64-bit key, given by the node (``DataContext.row_keys``): a keyed
   hash of the row's identifier where the data owner declared one, else its position in
   the table as read. A cell's row set is the sorted array of its rows' keys.
2. The check: ``|A xor B| = |A| + |B| - 2 |A and B|``, so only cells whose sizes differ by
   less than ``min_count`` can be too close; the record is indexed by (table, size) and
   only those are read and compared. Check and record are one ``BEGIN IMMEDIATE``
   transaction: two tasks cannot both pass against a record that lacks the other.
3. Storage: each distinct cell is kept once (a digest of its keys is part of the primary
   key, so a repeated query records nothing new), as its sorted keys delta-encoded and
   zlib-compressed, in the ``released_cells`` table of the node's privacy file, so the
   record survives restarts with the budget it sits beside.

What it does not stop: three or more releases combined (``A - B - C`` one row while no two
are close). Differential privacy, where a table's policy requires it, bounds those too.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from confide._errors import PolicyError
from confide.crypto import PartyIdentity
from confide.node._privacy_store import PrivacyStore

__all__ = ["Keys", "ReleaseRecord", "decode_keys", "encode_keys", "row_key_secret"]

Keys = npt.NDArray[np.uint64]


def row_key_secret(identity: PartyIdentity) -> bytes:
    """The secret that keys a node's row hashes: its signature of a fixed label (Ed25519 is deterministic).

    Stable across restarts and known only to the holder of the node's signing key, so the
    release record alone does not let anyone test guessed patient identifiers against it.
    """
    return hashlib.sha256(identity.sign(b"confide release record: row keys, v1")).digest()


def encode_keys(keys: Keys) -> bytes:
    """Sorted unique keys as zlib-compressed little-endian deltas (small for dense positions)."""
    deltas = np.diff(keys, prepend=np.uint64(0)).astype("<u8")
    return zlib.compress(deltas.tobytes(), 6)


def decode_keys(blob: bytes) -> Keys:
    """The inverse of :func:`encode_keys`."""
    deltas = np.frombuffer(zlib.decompress(blob), dtype="<u8")
    return np.cumsum(deltas, dtype=np.uint64)


class ReleaseRecord:
    """The ``released_cells`` table of ``store``: what each table's cells released, and the check."""

    def __init__(self, store: PrivacyStore) -> None:
        self._store = store

    def check_and_record(
        self, node_id: str, dataset: str, cells: Sequence[Keys], *, min_count: int, task_id: str
    ) -> None:
        """Refuse (:class:`PolicyError`) if a cell is too close to one released before; else record them.

        ``cells`` are sorted arrays of unique row keys, each the rows behind one released
        cell of ``dataset``. Too close: at least one and fewer than ``min_count`` rows apart.
        """
        unique = {hashlib.sha256(k.astype("<u8").tobytes()).digest(): k for k in cells}
        with self._store.transaction("BEGIN IMMEDIATE") as conn:
            fresh: dict[bytes, Keys] = {}
            for digest, keys in unique.items():
                if _known(conn, dataset, keys.size, digest):
                    continue
                if _too_close(conn, dataset, keys, min_count) or _close_among(
                    keys, list(fresh.values()), min_count
                ):
                    raise PolicyError(_refusal(node_id, dataset, min_count))
                fresh[digest] = keys
            at_ms = int(time.time() * 1000)
            conn.executemany(
                "INSERT INTO released_cells (dataset, size, digest, keys, task_id, at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (dataset, int(keys.size), digest, encode_keys(keys), task_id, at_ms)
                    for digest, keys in fresh.items()
                ],
            )

    def cells(self, dataset: str) -> int:
        """How many distinct cells of ``dataset`` are on record."""
        with self._store.transaction("BEGIN") as conn:
            row = conn.execute("SELECT COUNT(*) FROM released_cells WHERE dataset = ?", (dataset,)).fetchone()
        return int(row[0])


def _known(conn: sqlite3.Connection, dataset: str, size: int, digest: bytes) -> bool:
    found = conn.execute(
        "SELECT 1 FROM released_cells WHERE dataset = ? AND size = ? AND digest = ?", (dataset, size, digest)
    ).fetchone()
    return found is not None


def _too_close(conn: sqlite3.Connection, dataset: str, keys: Keys, min_count: int) -> bool:
    rows = conn.execute(
        "SELECT keys FROM released_cells WHERE dataset = ? AND size > ? AND size < ?",
        (dataset, keys.size - min_count, keys.size + min_count),
    )
    return any(_apart(keys, decode_keys(blob)) < min_count for (blob,) in rows)


def _close_among(keys: Keys, others: Sequence[Keys], min_count: int) -> bool:
    # Cells of one release are disjoint (each row in one cell), but a task's rounds may overlap.
    return any(abs(int(keys.size) - int(o.size)) < min_count and _apart(keys, o) < min_count for o in others)


def _apart(a: Keys, b: Keys) -> int:
    """``|a xor b|``; equal sets (0) are not apart: the same cohort asked again reveals nothing new."""
    shared = np.intersect1d(a, b, assume_unique=True).size
    apart = int(a.size) + int(b.size) - 2 * shared
    return apart if apart > 0 else 1 << 62


def _refusal(node_id: str, dataset: str, min_count: int) -> str:
    # No numbers: neither how many rows apart, nor which earlier release.
    return (
        f"node {node_id!r} refuses: a cell of this release uses rows of table {dataset!r} that differ from a "
        f"cell it released before by fewer than its min_count {min_count}; the two together would reveal "
        "those rows (differencing). Ask for groups or cohorts that differ by more, or ask with differential "
        "privacy"
    )
