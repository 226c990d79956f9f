"""``stats.summary`` under the node's disclosure rules: min_count, withheld columns, withheld extremes.

The step runs against the node's real ``LocalData`` over a CSV file, with the policy a
hospital would write; each test is what a curious researcher would try to read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from confide._errors import AlgorithmError, PolicyError
from confide.algorithms.stats import SUMMARY, Extremes
from confide.node import DataSourceConfig, LocalData, Policy

AGES = [34, 47, 51, 62, 68, 71, 88]  # 7 patients; the oldest is 88
RARE = [5.5, None, None, 9.25, None, None, None]  # 2 values: fewer than any min_count above 2
PARAMS = {"table": "patients", "columns": ["age", "rare"]}


def _data(tmp_path: Path, **policy: object) -> LocalData:
    path = tmp_path / "patients.csv"
    lines = ["age,rare", *(f"{a},{'' if r is None else r}" for a, r in zip(AGES, RARE, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    source = DataSourceConfig(
        name="patients", format="csv", path=path, columns={"age": "int", "rare": "float"}
    )
    return LocalData([source], policy=Policy.model_validate(policy))


def test_minimum_and_maximum_are_withheld_by_default_and_the_output_says_so(tmp_path: Path) -> None:
    out = SUMMARY.run(_data(tmp_path, min_count=5), PARAMS)

    age = out["columns"]["age"]  # type: ignore[index]
    assert (age["min"], age["max"]) == (None, None)
    assert age["count"] == len(AGES) and age["mean"] == pytest.approx(sum(AGES) / len(AGES))
    assert out["extremes"] == Extremes.WITHHELD == "withheld by the node's policy"
    assert 88.0 not in (age["mean"], age["std"])  # no single patient's value leaves


def test_a_table_that_allows_extremes_releases_them(tmp_path: Path) -> None:
    out = SUMMARY.run(_data(tmp_path, min_count=5, tables={"patients": {"allow_extremes": True}}), PARAMS)

    age = out["columns"]["age"]  # type: ignore[index]
    assert (age["min"], age["max"]) == (34.0, 88.0)
    assert out["extremes"] == Extremes.RELEASED


def test_a_column_with_fewer_values_than_min_count_is_withheld_whole(tmp_path: Path) -> None:
    allowed = {"patients": {"allow_extremes": True}}

    out = SUMMARY.run(_data(tmp_path, min_count=5, tables=allowed), PARAMS)

    rare = out["columns"]["rare"]  # type: ignore[index]
    assert rare == {"count": None, "mean": None, "std": None, "min": None, "max": None, "withheld": True}
    assert out["columns"]["age"]["withheld"] is False  # type: ignore[index]


def test_a_column_with_exactly_min_count_values_is_released(tmp_path: Path) -> None:
    out = SUMMARY.run(_data(tmp_path, min_count=2), PARAMS)

    rare = out["columns"]["rare"]  # type: ignore[index]
    assert rare["count"] == 2 and rare["mean"] == pytest.approx((5.5 + 9.25) / 2)
    assert rare["withheld"] is False


def test_a_table_below_min_count_is_refused_without_saying_how_many_rows(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="fewer rows than this node's min_count 10") as refused:
        SUMMARY.run(_data(tmp_path, min_count=10), PARAMS)

    message = str(refused.value)
    assert str(len(AGES)) not in message.replace("min_count 10", "")
    assert not any(str(a) in message for a in AGES)


def test_a_missing_column_is_still_named(tmp_path: Path) -> None:
    with pytest.raises(AlgorithmError, match="has no column 'weight'"):
        SUMMARY.run(_data(tmp_path), {"table": "patients", "columns": ["weight"]})
