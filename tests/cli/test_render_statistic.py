"""The CLI's rendering of a finalised statistic: tables, survivors, refusals, privacy."""

from __future__ import annotations

from rich.console import Console

from confide.algorithms._secure_stats import ZScoreOutput
from confide.cli._render import print_finalised
from confide.client import PrivacySpent, StatisticResult


def test_a_statistic_prints_its_table_who_was_summed_who_sat_out_and_the_epsilon() -> None:
    output = ZScoreOutput(
        table="patients",
        column="age",
        min_count=5,
        group={"age": "[60, 70)"},
        value=50.0,
        count=12,
        suppressed=False,
        mean=61.0,
        std_pop=10.0,
        std_sample=10.5,
        z=-1.03,
    )
    result = StatisticResult(
        statistic="stats.zscore",
        output=output,
        survivors=("node-a", "node-c"),
        refused={"node-b": "3 rows, fewer than its min_count 5"},
        min_count=5,
        privacy=PrivacySpent(epsilon=0.93, delta=1e-6, target_epsilon=1.0, survivors=2),
    )
    console = Console(record=True, width=200)

    print_finalised(console, result)

    text = console.export_text()
    assert "age=[60, 70)" in text and "-1.03" in text
    assert "secure aggregation over 2 node(s): node-a, node-c" in text
    assert "node-b did not contribute: 3 rows, fewer than its min_count 5" in text
    assert "epsilon 0.93 (asked 1)" in text
    assert result.to_json()["privacy"] == {"epsilon": 0.93, "delta": 1e-6}
