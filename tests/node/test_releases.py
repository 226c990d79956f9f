"""The release record: a cell whose rows differ from an earlier cell's by fewer than min_count is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from confide._errors import PolicyError
from confide.node._privacy_store import PrivacyStore
from confide.node._releases import ReleaseRecord, decode_keys, encode_keys


def _keys(*ranges: range) -> np.ndarray:
    return np.unique(np.concatenate([np.arange(r.start, r.stop, dtype=np.uint64) for r in ranges]))


@pytest.fixture
def record(tmp_path: Path) -> ReleaseRecord:
    return ReleaseRecord(PrivacyStore(tmp_path / "ledger.sqlite"))


def test_keys_survive_their_compact_encoding() -> None:
    keys = np.unique(np.random.default_rng(1).integers(0, 2**63, 1000, dtype=np.uint64))
    dense = _keys(range(0, 100_000))

    assert np.array_equal(decode_keys(encode_keys(keys)), keys)
    assert np.array_equal(decode_keys(encode_keys(dense)), dense)
    assert len(encode_keys(dense)) < 2_000  # positions compress to almost nothing


def test_a_cohort_one_row_smaller_than_an_earlier_one_is_refused_without_numbers(
    record: ReleaseRecord,
) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")

    with pytest.raises(PolicyError, match="differencing") as refused:
        record.check_and_record("node-a", "patients", [_keys(range(0, 39))], min_count=5, task_id="t2")

    assert "39" not in str(refused.value) and "40" not in str(refused.value)


def test_the_same_cohort_asked_again_is_allowed_and_recorded_once(record: ReleaseRecord) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t2")

    assert record.cells("patients") == 1


def test_cohorts_at_least_min_count_apart_are_allowed(record: ReleaseRecord) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")
    record.check_and_record("node-a", "patients", [_keys(range(0, 35))], min_count=5, task_id="t2")
    record.check_and_record(
        "node-a", "patients", [_keys(range(0, 35), range(40, 45))], min_count=5, task_id="t3"
    )

    assert record.cells("patients") == 3


def test_a_swap_of_one_row_is_two_apart_and_refused(record: ReleaseRecord) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")

    with pytest.raises(PolicyError):
        record.check_and_record("node-a", "patients", [_keys(range(1, 41))], min_count=5, task_id="t2")


def test_another_table_has_its_own_record(record: ReleaseRecord) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")

    record.check_and_record("node-a", "visits", [_keys(range(0, 39))], min_count=5, task_id="t2")


def test_a_refused_release_records_none_of_its_cells(record: ReleaseRecord) -> None:
    record.check_and_record("node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1")

    with pytest.raises(PolicyError):
        record.check_and_record(
            "node-a", "patients", [_keys(range(100, 200)), _keys(range(0, 39))], min_count=5, task_id="t2"
        )

    assert record.cells("patients") == 1


def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with PrivacyStore(path) as store:
        ReleaseRecord(store).check_and_record(
            "node-a", "patients", [_keys(range(0, 40))], min_count=5, task_id="t1"
        )

    with PrivacyStore(path) as store, pytest.raises(PolicyError):
        ReleaseRecord(store).check_and_record(
            "node-a", "patients", [_keys(range(0, 41))], min_count=5, task_id="t2"
        )
