"""The pay-gap query in the Conclave-style DSL: the same plan as ``query.sql``.

Two aggregates over the employers' rows, one per gender, by secure aggregation; a join on
the job category and the ratio at the researcher. ``python query.py`` prints the plan.
"""

from __future__ import annotations

from confide.query import (
    Query,
    aggregate_many,
    collect,
    compile_plan,
    create,
    defCol,
    divide,
    filter,
    join,
    project,
)

EMPLOYERS = ["node-a", "node-b", "node-c"]


def build() -> Query:
    """Women's and men's average compensation per job, and their ratio, for the researcher."""
    employees = create(
        "employees",
        [
            defCol("employee_id", "STRING"),
            defCol("gender", "STRING", categories=["F", "M"]),
            defCol("job", "STRING", categories=["engineer", "analyst", "sales", "manager"]),
            defCol("years", "INTEGER", bounds=[0, 50]),
            defCol("compensation", "FLOAT", bounds=[0, 1_000_000]),
        ],
        at=EMPLOYERS,
    )
    by_gender = {}
    for gender, name in (("F", "women"), ("M", "men")):
        rows = filter(employees, name, "gender", "==", gender)
        by_gender[name] = aggregate_many(
            rows, f"{name}_pay", ["job"], [("count", None, name), ("mean", "compensation", f"{name}_avg")]
        )
    both = join(by_gender["women"], by_gender["men"], "both", ["job"], ["job"])
    gap = divide(both, "gap", "ratio", ["women_avg", "men_avg"])
    result = project(gap, "result", ["job", "women", "men", "women_avg", "men_avg", "ratio"])
    return collect(result, to="researcher")


if __name__ == "__main__":
    query = build()
    print(compile_plan(query.relation, query.schema).explain())
