"""The CLI's rendering of a finalised statistic: tables, survivors, refusals, privacy."""

from __future__ import annotations

from pydantic import BaseModel
from rich.console import Console

from confide.algorithms._secure_stats import ResultTable
from confide.cli._render import print_statistic, statistic_json
from confide.client._statistics import PrivacySpent, StatisticResult


class _Out(BaseModel):
    z: float


def test_a_statistic_prints_its_table_who_was_summed_who_sat_out_and_the_epsilon() -> None:
    result = StatisticResult(
        statistic="stats.zscore",
        output=_Out(z=-1.03),
        survivors=("node-a", "node-c"),
        refused={"node-b": "3 rows, fewer than its min_count 5"},
        min_count=5,
        privacy=PrivacySpent(epsilon=0.93, delta=1e-6, target_epsilon=1.0, survivors=2),
        tables=[ResultTable("z-score", ["group", "z"], [["age=[60, 70)", "-1.03"]])],
    )
    console = Console(record=True, width=200)

    print_statistic(console, result)

    text = console.export_text()
    assert "age=[60, 70)" in text and "-1.03" in text
    assert "secure aggregation over 2 node(s): node-a, node-c" in text
    assert "node-b did not contribute: 3 rows, fewer than its min_count 5" in text
    assert "epsilon 0.93 (asked 1)" in text
    assert statistic_json(result)["privacy"] == {"epsilon": 0.93, "delta": 1e-6}
