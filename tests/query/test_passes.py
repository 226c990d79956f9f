"""The compiler passes on hand-built IR: push-down, aggregate rewriting, placement and refusals."""

from __future__ import annotations

import pytest

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    Collect,
    ColumnRef,
    Compare,
    CompareOp,
    Compute,
    Concat,
    Filter,
    Join,
    Literal,
    Project,
    Scan,
    Sqrt,
)
from confide.query._schema import FederationSchema
from confide.query.passes import Placement, compile_plan
from confide.query.passes.push_down import push_down
from confide.query.passes.resolve import resolve
from confide.query.passes.rewrite_aggregates import rewrite_aggregates

EMPLOYERS = ("acme", "globex", "initech")
SCHEMA = FederationSchema.model_validate(
    {
        "tables": {
            "employees": {
                "parties": EMPLOYERS,
                "columns": {
                    "employee_id": {"type": "str"},
                    "gender": {"type": "str", "categories": ["F", "M"]},
                    "job": {"type": "str", "categories": ["engineer", "manager", "sales"], "other": True},
                    "salary": {"type": "float", "bounds": [0, 1_000_000]},
                    "age": {"type": "int", "bins": [18, 30, 40, 50, 67]},
                    "bonus": {"type": "float"},
                },
            },
            "revenue": {
                "parties": EMPLOYERS,
                "columns": {
                    "company": {"type": "str", "categories": ["a", "b", "c"]},
                    "amount": {"type": "float", "bounds": [0, 1e9]},
                },
            },
        }
    }
)


def _employees() -> Concat:
    return Concat(tuple(Scan("employees", p) for p in EMPLOYERS))


def _mean_salary_by_gender() -> Collect:
    aggregate = Aggregate(_employees(), ("gender",), (AggregateSpec(AggFunc.MEAN, "salary", "avg_salary"),))
    return Collect(aggregate, "researcher")


def test_push_down_moves_filters_and_computations_into_every_party() -> None:
    older = Compare(CompareOp.GE, ColumnRef("age"), Literal(30))
    query = Compute(Filter(_employees(), older), "monthly", BinaryOp("/", ColumnRef("salary"), Literal(12)))

    pushed = push_down(query, SCHEMA)

    assert pushed == Concat(
        tuple(
            Compute(
                Filter(Scan("employees", p), older),
                "monthly",
                BinaryOp("/", ColumnRef("salary"), Literal(12)),
            )
            for p in EMPLOYERS
        )
    )


def test_mean_and_std_become_sums_finalised_at_the_receiver() -> None:
    specs = (AggregateSpec(AggFunc.MEAN, "salary", "avg"), AggregateSpec(AggFunc.STD, "salary", "sd"))
    query = Aggregate(_employees(), ("gender",), specs)

    rewritten = rewrite_aggregates(query, SCHEMA)

    n, s, ss = ColumnRef("__count_salary"), ColumnRef("__sum_salary"), ColumnRef("__sum_squares_salary")
    sums = Aggregate(
        _employees(),
        ("gender",),
        (
            AggregateSpec(AggFunc.COUNT, "salary", "__count_salary"),
            AggregateSpec(AggFunc.SUM, "salary", "__sum_salary"),
            AggregateSpec(AggFunc.SUM_SQUARES, "salary", "__sum_squares_salary"),
        ),
    )
    variance = BinaryOp(
        "/", BinaryOp("-", ss, BinaryOp("/", BinaryOp("*", s, s), n)), BinaryOp("-", n, Literal(1))
    )
    assert rewritten == Project(
        Compute(Compute(sums, "avg", BinaryOp("/", s, n)), "sd", Sqrt(variance)), ("gender", "avg", "sd")
    )


def test_a_grouped_mean_over_three_employers_is_local_sums_then_a_secure_sum() -> None:
    plan = compile_plan(_mean_salary_by_gender(), SCHEMA)

    placements = {type(s.relation).__name__: s.placement for s in plan.steps}
    assert placements["Scan"] is Placement.LOCAL
    assert placements["Aggregate"] is Placement.SECURE_SUM
    assert placements["Compute"] is Placement.RECEIVER
    text = plan.explain()
    assert text.splitlines()[0] == "collect to researcher  [at the receiver]"
    assert "secure sum over acme, globex, initech" in text
    assert "scan employees @ globex  [local at globex]" in text


def test_one_partys_own_aggregate_stays_local() -> None:
    query = Collect(
        Aggregate(Scan("employees", "acme"), (), (AggregateSpec(AggFunc.COUNT, None, "n"),)), "acme"
    )

    plan = compile_plan(query, SCHEMA)

    assert [s.placement for s in plan.steps] == [Placement.LOCAL, Placement.LOCAL, Placement.RECEIVER]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            Collect(
                Aggregate(
                    Join(
                        Project(Scan("employees", "acme"), ("employee_id", "salary")),
                        Project(Scan("employees", "globex"), ("employee_id",)),
                        (("employee_id", "employee_id"),),
                    ),
                    (),
                    (AggregateSpec(AggFunc.COUNT, None, "n"),),
                ),
                "researcher",
            ),
            "join on .employee_id = employee_id. across parties acme, globex needs private set intersection",
        ),
        (
            Collect(
                Aggregate(_employees(), (), (AggregateSpec(AggFunc.MEDIAN, "salary", "m"),)), "researcher"
            ),
            "median.salary. over acme, globex, initech needs general MPC",
        ),
        (Collect(Project(_employees(), ("salary",)), "researcher"), "row-level output"),
        (
            Collect(
                Aggregate(_employees(), ("employee_id",), (AggregateSpec(AggFunc.COUNT, None, "n"),)), "r"
            ),
            "GROUP BY employee_id .* no declared categories or bins",
        ),
        (
            Collect(Aggregate(_employees(), (), (AggregateSpec(AggFunc.SUM, "bonus", "b"),)), "researcher"),
            "sum.bonus. .* needs declared bounds for 'bonus'",
        ),
        (
            Collect(Aggregate(_employees(), ("gender",), (AggregateSpec(AggFunc.SUM, "gender", "x"),)), "r"),
            "sum needs a numeric column, not 'gender' .str.",
        ),
        (
            Collect(Filter(_employees(), Compare(CompareOp.EQ, ColumnRef("nope"), Literal(1))), "r"),
            "unknown column 'nope'",
        ),
        (Collect(Scan("employees", "hooli"), "r"), "table 'employees' is not held by 'hooli'"),
    ],
)
def test_what_needs_general_mpc_or_is_malformed_is_refused_clearly(query: Collect, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        compile_plan(query, SCHEMA)


def _market(reveal: tuple[str, ...]) -> Collect:
    revenue = Concat(tuple(Scan("revenue", p) for p in EMPLOYERS))
    per_company = Aggregate(revenue, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "company_total"),))
    squared = Compute(
        per_company, "sq", BinaryOp("*", ColumnRef("company_total"), ColumnRef("company_total"))
    )
    hhi = Aggregate(squared, (), (AggregateSpec(AggFunc.SUM, "sq", "hhi_raw"),))
    return Collect(hhi, "researcher", reveal)


def test_hhi_is_refused_unless_the_per_company_totals_may_be_revealed() -> None:
    with pytest.raises(QueryError, match="needs the secret aggregate 'company_total' in the clear"):
        compile_plan(_market(("hhi_raw",)), SCHEMA)

    plan = compile_plan(_market(("hhi_raw", "company_total")), SCHEMA)
    assert [s.placement for s in plan.steps][-3:] == [Placement.RECEIVER] * 3


def test_resolve_returns_the_tree_unchanged() -> None:
    query = _mean_salary_by_gender()
    assert resolve(query, SCHEMA) is query


def test_an_aggregate_over_a_secure_aggregate_runs_at_the_receiver() -> None:
    revenue = Concat(tuple(Scan("revenue", p) for p in EMPLOYERS))
    per_company = Aggregate(revenue, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "company_total"),))
    companies = Aggregate(per_company, (), (AggregateSpec(AggFunc.COUNT, None, "companies"),))

    plan = compile_plan(Collect(companies, "researcher"), SCHEMA)

    placed = {id(s.relation): s.placement for s in plan.steps}
    assert placed[id(plan.root.input)] is Placement.RECEIVER


def test_corr_sums_only_the_rows_where_both_columns_are_present() -> None:
    query = Aggregate(_employees(), (), (AggregateSpec(AggFunc.CORR, "salary", "r", "age"),))

    rewritten = rewrite_aggregates(query, SCHEMA)

    assert isinstance(rewritten, Project) and isinstance(rewritten.input, Compute)
    sums = rewritten.input.input
    assert isinstance(sums, Aggregate)
    assert sums.aggregates == (
        AggregateSpec(AggFunc.COUNT, "salary", "__count_salary_age", "age"),
        AggregateSpec(AggFunc.SUM, "salary", "__sum_salary_age", "age"),
        AggregateSpec(AggFunc.SUM, "age", "__sum_age_salary", "salary"),
        AggregateSpec(AggFunc.SUM_SQUARES, "salary", "__sum_squares_salary_age", "age"),
        AggregateSpec(AggFunc.SUM_SQUARES, "age", "__sum_squares_age_salary", "salary"),
        AggregateSpec(AggFunc.SUM_PRODUCTS, "salary", "__sum_products_salary_age", "age"),
    )


def test_a_second_column_is_refused_for_a_one_column_aggregate() -> None:
    query = Collect(Aggregate(_employees(), (), (AggregateSpec(AggFunc.MEAN, "salary", "m", "age"),)), "r")

    with pytest.raises(QueryError, match=r"mean takes one column, not \(salary, age\)"):
        compile_plan(query, SCHEMA)


def _per_company() -> Aggregate:
    revenue = Concat(tuple(Scan("revenue", p) for p in EMPLOYERS))
    return Aggregate(revenue, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "company_total"),))


def _shares(columns: tuple[str, ...]) -> Collect:
    market = Aggregate(_per_company(), (), (AggregateSpec(AggFunc.SUM, "company_total", "total"),))
    share = BinaryOp("/", ColumnRef("company_total"), ColumnRef("total"))
    return Collect(Project(Compute(Join(_per_company(), market, ()), "share", share), columns), "researcher")


def test_shares_run_at_the_receiver_when_the_per_company_totals_are_in_the_result() -> None:
    plan = compile_plan(_shares(("company", "company_total", "share")), SCHEMA)

    placed = [(type(s.relation).__name__, s.placement) for s in plan.steps]
    assert ("Join", Placement.RECEIVER) in placed
    assert placed.count(("Aggregate", Placement.SECURE_SUM)) == 2  # one WITH query, read twice
    # The secure sum counts its rows (for the parties' min_count); the total over it does not.
    assert (
        "aggregate company_total = sum(amount), __count_rows = count(*) by company  [secure sum over acme, "
        "globex, initech"
    ) in plan.explain()
    assert "aggregate total = sum(company_total)  [at the receiver]" in plan.explain()


def test_shares_without_the_per_company_totals_are_refused_naming_the_total() -> None:
    with pytest.raises(
        QueryError,
        match=r"^sum\(company_total\) at the receiver combines the values of several groups, so it needs the "
        r"secret aggregate 'company_total' in the clear \(sum\(amount\) by company over acme, globex, "
        r"initech\), which the query does not reveal; .* Supported: reveal it \(put 'company_total' in the "
        r"result, or collect\(\.\.\., reveal=\['company_total'\]\) in the DSL\)",
    ):
        compile_plan(_shares(("company", "share")), SCHEMA)


def test_a_secret_total_hidden_behind_an_internal_name_is_refused_too() -> None:
    revenue = Concat(tuple(Scan("revenue", p) for p in EMPLOYERS))
    per_company = Aggregate(revenue, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "__sum_amount"),))
    scaled = Project(Compute(per_company, "r", BinaryOp("*", ColumnRef("__sum_amount"), Literal(1))), ("r",))
    squares = Compute(scaled, "__arg1", BinaryOp("*", ColumnRef("r"), ColumnRef("r")))
    hhi = Aggregate(squares, (), (AggregateSpec(AggFunc.SUM, "__arg1", "hhi"),))

    with pytest.raises(
        QueryError,
        match=r"^sum\(r \* r\) at the receiver .* aggregate sum\(amount\) in the clear .*put 'r' in",
    ):
        compile_plan(Collect(hhi, "researcher"), SCHEMA)


def test_a_join_of_rows_with_an_aggregate_is_refused() -> None:
    query = Collect(
        Aggregate(Join(_employees(), _per_company(), ()), (), (AggregateSpec(AggFunc.COUNT, None, "n"),)), "r"
    )

    with pytest.raises(QueryError, match="cross join across parties acme, globex, initech needs private set"):
        compile_plan(query, SCHEMA)
