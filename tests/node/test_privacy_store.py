"""The node's privacy file: created private, migrated, foreign files refused, old accountants imported.

Nothing spent may be forgotten: a node upgraded in place keeps its v1 ledger's charges
and imports the DP-SGD accountant file an earlier confide kept beside it, once.
"""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from confide._errors import ConfigError
from confide.node import _privacy_store
from confide.node._privacy_store import LEGACY_ACCOUNTANT_FILE, SCHEMA_VERSION, PrivacyStore

CONF, CFDP = 0x434F4E46, 0x43464450
# A round of an old accountant: (dataset, job_id, round, noise, rate, steps, researcher, at_ms).
OLD_ROUNDS = [
    ("scans", "job-1/t1", 0, 1.5, 0.02, 50, "alice", 1_700_000_000_000),
    ("scans", "job-1/t2", 1, 1.5, 0.02, 50, "alice", 1_700_000_001_000),
    ("labs", "job-2/t3", 0, 0.9, 0.1, 20, "bob", 1_700_000_002_000),
]
OLD_CHARGES = [("alice", "patients", "t0", 0.5, 1e-6, 1_700_000_000_000)]


def _v1_ledger(path: Path, charges: list[tuple[object, ...]] = OLD_CHARGES) -> None:
    """A privacy ledger as confide wrote it before schema 2: only ``charges``."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE charges (researcher TEXT NOT NULL, dataset TEXT NOT NULL, task_id TEXT NOT NULL, "
        "epsilon REAL NOT NULL, delta REAL NOT NULL, at_ms INTEGER NOT NULL, "
        "PRIMARY KEY (researcher, dataset, task_id))"
    )
    conn.executemany("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?)", charges)
    conn.execute(f"PRAGMA application_id = {CONF}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def _old_accountant(folder: Path, rounds: list[tuple[object, ...]] = OLD_ROUNDS) -> Path:
    """The DP-SGD accountant file of confide before schema 2, beside the ledger."""
    path = folder / LEGACY_ACCOUNTANT_FILE
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE noisy_steps (dataset TEXT NOT NULL, job_id TEXT NOT NULL, round INTEGER NOT NULL, "
        "noise_multiplier REAL NOT NULL, sample_rate REAL NOT NULL, steps INTEGER NOT NULL, "
        "researcher TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (dataset, job_id, round))"
    )
    conn.executemany("INSERT INTO noisy_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rounds)
    conn.execute(f"PRAGMA application_id = {CFDP}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    return path


def _read(path: Path) -> tuple[int, int, list[tuple[object, ...]], list[tuple[object, ...]]]:
    """(application id, schema version, charges rows, noisy_steps rows) of a ledger file."""
    conn = sqlite3.connect(path)
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        charges = conn.execute("SELECT * FROM charges ORDER BY rowid").fetchall()
        steps = conn.execute("SELECT * FROM noisy_steps ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return app_id, version, charges, steps


def test_a_fresh_file_gets_every_table_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"

    PrivacyStore(path).close()

    assert SCHEMA_VERSION == 3
    assert _read(path) == (CONF, 3, [], [])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["privacy-ledger.sqlite"]


def test_a_v1_ledger_is_migrated_keeping_its_charges(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _v1_ledger(path)

    PrivacyStore(path).close()

    assert _read(path) == (CONF, 3, OLD_CHARGES, [])


def test_an_old_accountant_beside_a_v1_ledger_is_imported_and_renamed(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _v1_ledger(path)
    old = _old_accountant(tmp_path)

    PrivacyStore(path).close()

    assert _read(path) == (CONF, 3, OLD_CHARGES, OLD_ROUNDS)
    assert not old.exists()
    imported = tmp_path / "dpsgd-accountant.sqlite.imported"
    conn = sqlite3.connect(imported)
    assert conn.execute("SELECT * FROM noisy_steps ORDER BY rowid").fetchall() == OLD_ROUNDS  # kept as it was
    conn.close()


def test_an_old_accountant_is_imported_where_no_ledger_was_ever_written(tmp_path: Path) -> None:
    # A node that only ever trained had the accountant and no statistics ledger yet.
    path = tmp_path / "privacy-ledger.sqlite"
    _old_accountant(tmp_path)

    PrivacyStore(path).close()

    assert _read(path) == (CONF, 3, [], OLD_ROUNDS)
    assert (tmp_path / "dpsgd-accountant.sqlite.imported").exists()


def test_reopening_a_migrated_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _v1_ledger(path)
    _old_accountant(tmp_path)
    PrivacyStore(path).close()
    before = _read(path)
    files = sorted(p.name for p in tmp_path.iterdir())

    PrivacyStore(path).close()
    PrivacyStore(path).close()

    assert _read(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_a_crash_between_copying_and_renaming_imports_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _v1_ledger(path)
    old = _old_accountant(tmp_path)
    with monkeypatch.context() as crash:
        crash.setattr(_privacy_store, "_retire", lambda legacy: None)  # the node died before renaming
        PrivacyStore(path).close()
    assert old.exists() and _read(path)[3] == OLD_ROUNDS

    PrivacyStore(path).close()

    assert _read(path) == (CONF, 3, OLD_CHARGES, OLD_ROUNDS)
    assert not old.exists() and (tmp_path / "dpsgd-accountant.sqlite.imported").exists()


def test_an_import_that_fails_halfway_records_nothing_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    old = _old_accountant(tmp_path)
    copy_step = _privacy_store._copy_step
    copied: list[object] = []

    def copy_then_fail(*args: object) -> bool:
        if copied:
            raise OSError("disk full")
        copied.append(args)
        return copy_step(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_privacy_store, "_copy_step", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        PrivacyStore(path)
    monkeypatch.undo()

    assert old.exists() and _read(path)[3] == []
    PrivacyStore(path).close()
    assert _read(path)[3] == OLD_ROUNDS


def test_an_old_file_left_beside_an_earlier_import_is_renamed_without_overwriting(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _old_accountant(tmp_path, OLD_ROUNDS[:1])
    PrivacyStore(path).close()
    _old_accountant(tmp_path, OLD_ROUNDS)  # an earlier confide ran again on this node

    PrivacyStore(path).close()

    assert _read(path)[3] == OLD_ROUNDS
    names = sorted(p.name for p in tmp_path.iterdir() if "imported" in p.name)
    assert names == ["dpsgd-accountant.sqlite.imported", "dpsgd-accountant.sqlite.imported-2"]


def test_an_old_round_that_conflicts_with_the_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    _old_accountant(tmp_path, OLD_ROUNDS[:1])
    PrivacyStore(path).close()
    changed = (*OLD_ROUNDS[0][:3], 0.5, *OLD_ROUNDS[0][4:])
    old = _old_accountant(tmp_path, [changed])

    with pytest.raises(
        ConfigError, match=r"round 0 of job job-1/t1 on dataset scans is recorded with another"
    ):
        PrivacyStore(path)

    assert old.exists() and _read(path)[3] == OLD_ROUNDS[:1]


def test_an_empty_old_accountant_file_is_retired(tmp_path: Path) -> None:
    (tmp_path / LEGACY_ACCOUNTANT_FILE).touch()  # created by an old node that stopped at once

    PrivacyStore(tmp_path / "privacy-ledger.sqlite").close()

    assert (tmp_path / "dpsgd-accountant.sqlite.imported").exists()


def test_a_foreign_file_in_the_old_accountants_place_is_refused_and_kept(tmp_path: Path) -> None:
    old = tmp_path / LEGACY_ACCOUNTANT_FILE
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()

    with pytest.raises(ConfigError, match=r"cannot import .*dpsgd-accountant\.sqlite.*not a confide DP-SGD"):
        PrivacyStore(tmp_path / "privacy-ledger.sqlite")

    assert old.exists()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite"
    PrivacyStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 4")
    conn.close()

    with pytest.raises(
        ConfigError, match=r"written by a newer confide \(schema 4, this confide knows up to 3\); upgrade"
    ):
        PrivacyStore(path)


def test_a_corrupt_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, just some bytes" * 100)

    with pytest.raises(
        ConfigError, match=rf"privacy ledger {re.escape(str(path))} cannot be read.*restore it from a backup"
    ):
        PrivacyStore(path)


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (id TEXT)")
    conn.close()

    with pytest.raises(
        ConfigError, match=rf"{re.escape(str(path))} is an SQLite database but not a confide privacy ledger"
    ):
        PrivacyStore(path)


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "ledger.sqlite"

    with pytest.raises(ConfigError, match=r"folder .*nowhere does not exist.*policy\.ledger"):
        PrivacyStore(path)


_CRASH_WITH_ROWS_IN_THE_WAL = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("INSERT INTO noisy_steps VALUES ('scans', 'job-9/t9', 0, 2.0, 0.01, 10, 'carol', 1700000009000)")
os._exit(0)  # no checkpoint, no close: the row is only in the -wal file
"""


def test_rows_an_old_node_left_in_its_write_ahead_log_are_imported(tmp_path: Path) -> None:
    old = _old_accountant(tmp_path)
    subprocess.run([sys.executable, "-c", _CRASH_WITH_ROWS_IN_THE_WAL, str(old)], check=True)
    assert (tmp_path / f"{LEGACY_ACCOUNTANT_FILE}-wal").stat().st_size > 0

    PrivacyStore(tmp_path / "privacy-ledger.sqlite").close()

    rows = _read(tmp_path / "privacy-ledger.sqlite")[3]
    assert rows == [*OLD_ROUNDS, ("scans", "job-9/t9", 0, 2.0, 0.01, 10, "carol", 1_700_000_009_000)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dpsgd")) == [
        "dpsgd-accountant.sqlite.imported"
    ]
