"""Small groups are withheld at the receiver, and so is everything computed from them."""

from __future__ import annotations

import numpy as np

from confide.query._ir import AggFunc, Aggregate, AggregateSpec, Collect, Concat, Project, Scan
from confide.query._layout import DenseLayout, secure_aggregates
from confide.query._receiver import finalise, withheld_groups
from confide.query._schema import FederationSchema
from confide.query._sql import parse_sql
from confide.query.passes import Plan, compile_plan

PARTIES = ("acme", "globex")
SCHEMA = FederationSchema.model_validate(
    {
        "tables": {
            "employees": {
                "parties": PARTIES,
                "columns": {
                    "gender": {"type": "str", "categories": ["F", "M"]},
                    "job": {"type": "str", "categories": ["engineer", "manager", "sales"]},
                    "salary": {"type": "float", "bounds": [0, 300_000]},
                },
            }
        }
    }
)


Cells = dict[tuple[str, ...], dict[str, float]]  # each group's labels -> its specs' totals


def _totals(plan: Plan, cells: Cells) -> tuple[np.ndarray, DenseLayout]:
    [aggregate] = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=1000)
    total = [
        cells.get(tuple(str(v) for v in labels.values()), {}).get(spec.out, 0.0)
        for labels in layout.labels()
        for spec in layout.specs
    ]
    return np.asarray(total, dtype=np.float64), layout


def test_a_group_below_min_count_is_withheld_and_counted() -> None:
    plan = compile_plan(
        parse_sql("SELECT gender, COUNT(*) AS n, AVG(salary) AS mean FROM employees GROUP BY gender", SCHEMA),
        SCHEMA,
    )
    cells: Cells = {
        ("F",): {"n": 3, "__count_salary": 3, "__sum_salary": 150.0},
        ("M",): {"n": 8, "__count_salary": 8, "__sum_salary": 800.0},
    }
    total, layout = _totals(plan, cells)

    rows = finalise(plan, {0: total}, [layout], min_count=5)

    assert rows == [{"gender": "F", "n": None, "mean": None}, {"gender": "M", "n": 8.0, "mean": 100.0}]
    assert withheld_groups({0: total}, [layout], 5) == 1
    assert finalise(plan, {0: total}, [layout])[0] == {"gender": "F", "n": 3.0, "mean": 50.0}


def test_a_total_over_groups_with_a_withheld_one_is_unknown_not_partial() -> None:
    by_job = Aggregate(
        Concat(tuple(Scan("employees", p) for p in PARTIES)),
        ("job",),
        (AggregateSpec(AggFunc.SUM, "salary", "revenue"), AggregateSpec(AggFunc.COUNT, None, "n")),
    )
    overall = Aggregate(
        Project(by_job, ("job", "revenue")), (), (AggregateSpec(AggFunc.SUM, "revenue", "all"),)
    )
    # The per-job totals are summed at the receiver: the query must reveal them.
    plan = compile_plan(Collect(overall, "researcher", reveal=("revenue",)), SCHEMA)
    cells: Cells = {
        ("engineer",): {"revenue": 900.0, "n": 9},
        ("manager",): {"revenue": 50.0, "n": 1},
        ("sales",): {"revenue": 700.0, "n": 7},
    }
    total, layout = _totals(plan, cells)

    assert finalise(plan, {0: total}, [layout], min_count=5) == [{"all": None}]
    assert finalise(plan, {0: total}, [layout], min_count=1) == [{"all": 1650.0}]


def test_a_ratio_with_a_withheld_factor_is_withheld_and_a_comparison_with_it_is_unknown() -> None:
    sql = "SELECT gender, SUM(salary) / COUNT(*) AS mean FROM employees GROUP BY gender HAVING COUNT(*) > 0"
    plan = compile_plan(parse_sql(sql, SCHEMA), SCHEMA)
    [aggregate] = secure_aggregates(plan)
    counts = [s.out for s in aggregate.aggregates if s.func is AggFunc.COUNT]
    sums = [s.out for s in aggregate.aggregates if s.func is AggFunc.SUM]
    cells: Cells = {
        ("F",): {**dict.fromkeys(counts, 2.0), **dict.fromkeys(sums, 100.0)},
        ("M",): {**dict.fromkeys(counts, 6.0), **dict.fromkeys(sums, 600.0)},
    }
    total, layout = _totals(plan, cells)

    rows = finalise(plan, {0: total}, [layout], min_count=5)

    assert rows == [{"gender": "M", "mean": 100.0}]


def test_a_sum_alone_still_counts_its_rows_so_a_small_group_is_withheld() -> None:
    plan = compile_plan(
        parse_sql("SELECT gender, SUM(salary) AS payroll FROM employees GROUP BY gender", SCHEMA), SCHEMA
    )
    cells: Cells = {
        ("F",): {"payroll": 250_000.0, "__count_rows": 2},
        ("M",): {"payroll": 900_000.0, "__count_rows": 9},
    }
    total, layout = _totals(plan, cells)

    rows = finalise(plan, {0: total}, [layout], min_count=5)

    # Without the hidden count, F's payroll of two people would be revealed.
    assert rows == [{"gender": "F", "payroll": None}, {"gender": "M", "payroll": 900_000.0}]
    assert withheld_groups({0: total}, [layout], 5) == 1
