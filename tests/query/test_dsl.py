"""The Conclave-style DSL builds the exact IR and schema, and refuses mistakes where they are made."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest

from confide._errors import QueryError
from confide.query._columns import output_columns
from confide.query._dsl import Col, ColumnDef, Query, Rel, col, create, defCol
from confide.query._dsl_aggregate import aggregate, aggregate_count, aggregate_many
from confide.query._dsl_operators import collect, concat, divide, filter, join, multiply, project
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    Collect,
    ColumnRef,
    ColumnType,
    Compare,
    CompareOp,
    Compute,
    Concat,
    Filter,
    Join,
    Literal,
    Project,
    Scan,
)
from confide.query._schema import ColumnSchema, FederationSchema, TableSchema
from confide.query.passes import Plan, compile_plan

AGE_BINS = ("18-39", "40-59", "60+")
EMPLOYERS = {"acme", "globex", "initech"}


def raises(message: str) -> pytest.RaisesExc[QueryError]:
    """Expect a QueryError with exactly ``message``."""
    return pytest.raises(QueryError, match=f"^{re.escape(message)}$")


# -- fixtures: the seeds' programs -----------------------------------------------------


def hippocampus(party: str) -> Rel:
    return create(
        "hippocampus",
        [
            defCol("age_bin", "STRING", {party}, categories=AGE_BINS),
            defCol("volume", "FLOAT", {party}, bounds=(1000, 6000)),
        ],
        at=party,
    )


HIPPOCAMPUS_SCHEMA = {
    "age_bin": ColumnSchema(type=ColumnType.STR, categories=AGE_BINS),
    "volume": ColumnSchema(type=ColumnType.FLOAT, bounds=(1000, 6000)),
}


def employees() -> Rel:
    return create(
        "employees",
        [
            defCol("gender", "STRING", categories=["F", "M"]),
            defCol("job", "STRING", categories=["engineer", "manager", "sales"], other=True),
            defCol("salary", "FLOAT", bounds=(0, 1_000_000)),
            defCol("hours", "INTEGER", bounds=(1, 80)),
        ],
        at=EMPLOYERS,
    )


EMPLOYEES_SCAN = Concat(
    (Scan("employees", "acme"), Scan("employees", "globex"), Scan("employees", "initech"))
)
EMPLOYEES_SCHEMA = FederationSchema(
    tables={
        "employees": TableSchema(
            parties=("acme", "globex", "initech"),
            columns={
                "gender": ColumnSchema(type=ColumnType.STR, categories=("F", "M")),
                "job": ColumnSchema(
                    type=ColumnType.STR, categories=("engineer", "manager", "sales"), other=True
                ),
                "salary": ColumnSchema(type=ColumnType.FLOAT, bounds=(0, 1_000_000)),
                "hours": ColumnSchema(type=ColumnType.INT, bounds=(1, 80)),
            },
        )
    }
)


def revenue() -> Rel:
    return create(
        "revenue",
        [
            defCol("company", "str", categories=["a", "b", "c"]),
            defCol("amount", "int", bounds=(0, 10**9)),
        ],
        at=["p1", "p3", "p2"],
    )


REVENUE_SCAN = Concat((Scan("revenue", "p1"), Scan("revenue", "p2"), Scan("revenue", "p3")))
REVENUE_SCHEMA = FederationSchema(
    tables={
        "revenue": TableSchema(
            parties=("p1", "p2", "p3"),
            columns={
                "company": ColumnSchema(type=ColumnType.STR, categories=("a", "b", "c")),
                "amount": ColumnSchema(type=ColumnType.INT, bounds=(0, 10**9)),
            },
        )
    }
)


# -- (a) brain volume --------------------------------------------------------------------


def test_brain_volume_mean_and_std_by_age_bin_over_two_hospitals() -> None:
    both = concat([hippocampus("mgh"), hippocampus("bwh")], "both")
    stats = aggregate_many(
        both, "stats", ["age_bin"], [("mean", "volume", "mean_volume"), ("std", "volume", "std_volume")]
    )

    query = collect(stats, "researcher")

    assert query == Query(
        relation=Collect(
            Aggregate(
                Concat((Scan("hippocampus", "mgh"), Scan("hippocampus", "bwh"))),
                ("age_bin",),
                (
                    AggregateSpec(AggFunc.MEAN, "volume", "mean_volume"),
                    AggregateSpec(AggFunc.STD, "volume", "std_volume"),
                ),
            ),
            "researcher",
        ),
        schema=FederationSchema(
            tables={"hippocampus": TableSchema(parties=("bwh", "mgh"), columns=HIPPOCAMPUS_SCHEMA)}
        ),
    )
    assert [(c.name, c.type) for c in stats.columns] == [
        ("age_bin", ColumnType.STR),
        ("mean_volume", ColumnType.FLOAT),
        ("std_volume", ColumnType.FLOAT),
    ]


def test_brain_volume_one_aggregate_per_call_as_in_conclave() -> None:
    both = concat([hippocampus("mgh"), hippocampus("bwh")], "both")

    query = collect(aggregate(both, "means", ["age_bin"], "volume", "mean", "mean_volume"), "researcher")

    assert query.relation == Collect(
        Aggregate(
            Concat((Scan("hippocampus", "mgh"), Scan("hippocampus", "bwh"))),
            ("age_bin",),
            (AggregateSpec(AggFunc.MEAN, "volume", "mean_volume"),),
        ),
        "researcher",
    )


def test_a_table_created_at_two_parties_is_the_concat_of_their_scans_in_party_order() -> None:
    columns = [
        defCol("age_bin", "STRING", categories=AGE_BINS),
        defCol("volume", "FLOAT", bounds=(1000, 6000)),
    ]

    both = create("hippocampus", columns, at={"mgh", "bwh"})

    assert both.relation == Concat((Scan("hippocampus", "bwh"), Scan("hippocampus", "mgh")))
    assert dict(both.tables) == {
        "hippocampus": TableSchema(parties=("bwh", "mgh"), columns=HIPPOCAMPUS_SCHEMA)
    }


def test_a_table_created_at_one_party_is_its_scan() -> None:
    rel = hippocampus("mgh")

    assert rel.relation == Scan("hippocampus", "mgh")
    assert rel.columns[0] == ColumnDef(
        "age_bin", ColumnSchema(type=ColumnType.STR, categories=AGE_BINS), frozenset({"mgh"})
    )


def test_concat_keeps_the_owners_every_input_shares_and_flattens_nested_concats() -> None:
    left = concat([hippocampus("a"), hippocampus("b")])
    rel = concat([left, hippocampus("c")], "all")

    assert rel.relation == Concat(
        (Scan("hippocampus", "a"), Scan("hippocampus", "b"), Scan("hippocampus", "c"))
    )
    assert left.name == "hippocampus"
    assert [c.owners for c in rel.columns] == [frozenset(), frozenset()]
    assert rel.tables["hippocampus"].parties == ("a", "b", "c")


# -- (b) pay gap -----------------------------------------------------------------------


def test_pay_gap_mean_salary_by_gender() -> None:
    query = collect(
        aggregate(employees(), "by_gender", ["gender"], "salary", "mean", "mean_salary"), "analyst"
    )

    assert query == Query(
        Collect(
            Aggregate(EMPLOYEES_SCAN, ("gender",), (AggregateSpec(AggFunc.MEAN, "salary", "mean_salary"),)),
            "analyst",
        ),
        EMPLOYEES_SCHEMA,
    )


def test_pay_gap_mean_salary_by_job_category() -> None:
    query = collect(aggregate(employees(), "by_job", ["job"], "salary", "mean", "mean_salary"), "analyst")

    assert query == Query(
        Collect(
            Aggregate(EMPLOYEES_SCAN, ("job",), (AggregateSpec(AggFunc.MEAN, "salary", "mean_salary"),)),
            "analyst",
        ),
        EMPLOYEES_SCHEMA,
    )


def test_aggregate_count_counts_rows() -> None:
    rel = aggregate_count(employees(), "n", ["gender", "job"], "n")

    assert rel.relation == Aggregate(
        EMPLOYEES_SCAN, ("gender", "job"), (AggregateSpec(AggFunc.COUNT, None, "n"),)
    )
    assert rel.columns[-1] == ColumnDef("n", ColumnSchema(type=ColumnType.INT))


# -- (c) market share ---------------------------------------------------------------------


def test_market_share_revenue_by_company() -> None:
    query = collect(aggregate(revenue(), "by_company", ["company"], "amount", "sum", "total"), "regulator")

    assert query == Query(
        Collect(
            Aggregate(REVENUE_SCAN, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "total"),)),
            "regulator",
        ),
        REVENUE_SCHEMA,
    )


def test_market_total_aggregates_all_rows_and_accepts_conclaves_plus() -> None:
    total = aggregate(revenue(), "total", [], "amount", "+", "total")

    query = collect(total, "regulator")

    assert query == Query(
        Collect(Aggregate(REVENUE_SCAN, (), (AggregateSpec(AggFunc.SUM, "amount", "total"),)), "regulator"),
        REVENUE_SCHEMA,
    )
    assert total.columns == (ColumnDef("total", ColumnSchema(type=ColumnType.INT)),)


@pytest.mark.parametrize(
    ("fn", "func", "result"),
    [
        ("count", AggFunc.COUNT, ColumnType.INT),
        ("sum", AggFunc.SUM, ColumnType.INT),
        ("mean", AggFunc.MEAN, ColumnType.FLOAT),
        ("var", AggFunc.VAR, ColumnType.FLOAT),
        ("std", AggFunc.STD, ColumnType.FLOAT),
        ("var_pop", AggFunc.VAR_POP, ColumnType.FLOAT),
        ("std_pop", AggFunc.STD_POP, ColumnType.FLOAT),
        ("median", AggFunc.MEDIAN, ColumnType.FLOAT),
        ("min", AggFunc.MIN, ColumnType.INT),
        ("max", AggFunc.MAX, ColumnType.INT),
        (AggFunc.SUM, AggFunc.SUM, ColumnType.INT),
    ],
)
def test_every_aggregate_function_maps_to_its_agg_func(fn: str, func: AggFunc, result: ColumnType) -> None:
    rel = aggregate(revenue(), "r", ["company"], "amount", fn, "out")

    assert rel.relation == Aggregate(REVENUE_SCAN, ("company",), (AggregateSpec(func, "amount", "out"),))
    assert rel.columns[-1].type is result


# -- multiply, divide, project, filter, join ---------------------------------------------


def test_multiply_folds_columns_and_constants_left_to_right() -> None:
    rel = multiply(employees(), "weighted", "w", ["hours", "salary", 2])

    assert rel.relation == Compute(
        EMPLOYEES_SCAN,
        "w",
        BinaryOp("*", BinaryOp("*", ColumnRef("hours"), ColumnRef("salary")), Literal(2)),
    )
    assert rel.column_names == ("gender", "job", "salary", "hours", "w")
    assert rel.columns[-1] == ColumnDef("w", ColumnSchema(type=ColumnType.FLOAT))


def test_multiply_of_integers_is_an_integer() -> None:
    rel = multiply(employees(), "doubled", "h2", ["hours", 2])

    assert rel.columns[-1].type is ColumnType.INT


def test_divide_is_a_float_column() -> None:
    rel = divide(employees(), "hourly", "per_hour", ["salary", "hours", 52])

    assert rel.relation == Compute(
        EMPLOYEES_SCAN,
        "per_hour",
        BinaryOp("/", BinaryOp("/", ColumnRef("salary"), ColumnRef("hours")), Literal(52)),
    )
    assert rel.columns[-1].type is ColumnType.FLOAT


def test_computed_column_is_owned_by_those_who_own_every_operand() -> None:
    rel = create("t", [defCol("x", "int", {"a", "b"}), defCol("y", "int", ["b", "c"])], at="a")

    assert multiply(rel, "m", "xy", ["x", "y"]).columns[-1].owners == frozenset({"b"})


def test_pay_gap_per_hour_then_mean_by_gender_builds_the_whole_tree() -> None:
    hourly = divide(employees(), "hourly", "per_hour", ["salary", "hours"])
    kept = project(hourly, "kept", ["gender", "per_hour"])

    query = collect(aggregate(kept, "gap", ["gender"], "per_hour", "mean", "mean_per_hour"), "analyst")

    assert query.relation == Collect(
        Aggregate(
            Project(
                Compute(EMPLOYEES_SCAN, "per_hour", BinaryOp("/", ColumnRef("salary"), ColumnRef("hours"))),
                ("gender", "per_hour"),
            ),
            ("gender",),
            (AggregateSpec(AggFunc.MEAN, "per_hour", "mean_per_hour"),),
        ),
        "analyst",
    )
    assert query.schema == EMPLOYEES_SCHEMA


def test_project_keeps_the_columns_in_the_given_order() -> None:
    rel = project(employees(), "p", ["salary", "gender"])

    assert rel.relation == Project(EMPLOYEES_SCAN, ("salary", "gender"))
    assert rel.column_names == ("salary", "gender")


@pytest.mark.parametrize(
    ("operator", "op"),
    [
        ("==", CompareOp.EQ),
        ("!=", CompareOp.NE),
        ("<", CompareOp.LT),
        ("<=", CompareOp.LE),
        (">", CompareOp.GT),
        (">=", CompareOp.GE),
    ],
)
def test_filter_compares_a_column_with_a_constant(operator: str, op: CompareOp) -> None:
    rel = filter(employees(), "f", "hours", operator, 40)

    assert rel.relation == Filter(EMPLOYEES_SCAN, Compare(op, ColumnRef("hours"), Literal(40)))
    assert rel.columns == employees().columns


def test_filter_on_a_string_column_compares_with_a_string_constant() -> None:
    rel = filter(employees(), "women", "gender", "==", "F")

    assert rel.relation == Filter(EMPLOYEES_SCAN, Compare(CompareOp.EQ, ColumnRef("gender"), Literal("F")))


def test_filter_compares_two_columns_with_col() -> None:
    rel = filter(employees(), "f", "salary", ">", col("hours"))

    assert rel.relation == Filter(
        EMPLOYEES_SCAN, Compare(CompareOp.GT, ColumnRef("salary"), ColumnRef("hours"))
    )
    assert col("hours") == Col("hours")


def test_join_on_key_pairs_has_keys_then_left_then_right_columns() -> None:
    patients = create("patients", [defCol("id", "int"), defCol("age", "int", bounds=(0, 120))], at="hospital")
    labs = create("labs", [defCol("pid", "int"), defCol("hba1c", "float", bounds=(3, 20))], at="lab")

    joined = join(patients, labs, "joined", ["id"], ["pid"])
    query = collect(filter(joined, "old", "age", ">=", 65), "researcher")

    assert query == Query(
        Collect(
            Filter(
                Join(Scan("patients", "hospital"), Scan("labs", "lab"), (("id", "pid"),)),
                Compare(CompareOp.GE, ColumnRef("age"), Literal(65)),
            ),
            "researcher",
        ),
        FederationSchema(
            tables={
                "patients": TableSchema(
                    parties=("hospital",),
                    columns={
                        "id": ColumnSchema(type=ColumnType.INT),
                        "age": ColumnSchema(type=ColumnType.INT, bounds=(0, 120)),
                    },
                ),
                "labs": TableSchema(
                    parties=("lab",),
                    columns={
                        "pid": ColumnSchema(type=ColumnType.INT),
                        "hba1c": ColumnSchema(type=ColumnType.FLOAT, bounds=(3, 20)),
                    },
                ),
            }
        ),
    )
    assert joined.column_names == ("id", "age", "pid", "hba1c")


def test_join_keeps_a_key_named_the_same_on_both_sides_once() -> None:
    left = create("l", [defCol("k", "int"), defCol("x", "int")], at="a")
    right = create("r", [defCol("k", "int"), defCol("y", "float")], at="b")

    joined = join(left, right, "j", ["k"], ["k"])

    assert joined.relation == Join(Scan("l", "a"), Scan("r", "b"), (("k", "k"),))
    assert joined.column_names == ("k", "x", "y")


def test_rels_are_immutable_values() -> None:
    rel = employees()

    with pytest.raises(dataclasses.FrozenInstanceError):
        rel.name = "other"  # type: ignore[misc]
    assert employees() == rel


# -- errors ---------------------------------------------------------------------------------


def test_unknown_column_lists_the_relations_columns() -> None:
    with raises(
        "project 'p': columns: 'agee' is not a column of 'employees'; "
        "its columns are: gender, job, salary, hours"
    ):
        project(employees(), "p", ["gender", "agee"])


def test_unknown_group_column_is_refused() -> None:
    with raises(
        "aggregate 'a': group_cols: 'sex' is not a column of 'employees'; its columns are: "
        "gender, job, salary, hours"
    ):
        aggregate(employees(), "a", ["sex"], "salary", "mean", "m")


def test_concat_refuses_a_type_mismatch_naming_the_column() -> None:
    ints = create(
        "hippocampus", [defCol("age_bin", "str", categories=AGE_BINS), defCol("volume", "int")], at="x"
    )

    with raises(
        "concat 'both': 'hippocampus' and 'hippocampus' differ: column 'volume' is "
        "(type='float', bounds=[1000.0, 6000.0]) versus (type='int')"
    ):
        concat([hippocampus("mgh"), ints], "both")


def test_concat_refuses_different_columns() -> None:
    other = create("scans", [defCol("volume", "float", bounds=(1000, 6000))], at="x")

    with raises("concat 'both': 'hippocampus' and 'scans' differ: columns (age_bin, volume) versus (volume)"):
        concat([hippocampus("mgh"), other], "both")


def test_concat_refuses_one_partys_table_twice() -> None:
    with raises(
        "concat 'hippocampus': table 'hippocampus' at 'a' is included twice; its rows would count twice"
    ):
        concat([hippocampus("a"), hippocampus("a")])


def test_concat_needs_two_relations() -> None:
    with raises("concat 'hippocampus': rels must be a list of two or more relations"):
        concat([hippocampus("a")])


def test_one_table_declared_differently_at_two_parties_is_refused() -> None:
    wider = create(
        "hippocampus",
        [
            defCol("age_bin", "STRING", categories=AGE_BINS),
            defCol("volume", "FLOAT", bounds=(1000, 6000)),
            defCol("scanner", "STRING"),
        ],
        at="bwh",
    )
    same_columns = project(wider, "same_columns", ["age_bin", "volume"])

    with raises(
        "concat 'both': table 'hippocampus' is declared differently at mgh and at bwh: "
        "columns (age_bin, volume) versus (age_bin, volume, scanner); "
        "every party must declare the same columns"
    ):
        concat([hippocampus("mgh"), same_columns], "both")


def test_concat_refuses_columns_declared_with_different_domains() -> None:
    wider = create(
        "volumes",
        [defCol("age_bin", "STRING", categories=AGE_BINS), defCol("volume", "FLOAT", bounds=(0, 9000))],
        at="bwh",
    )

    with raises(
        "concat 'both': 'hippocampus' and 'volumes' differ: column 'volume' is "
        "(type='float', bounds=[1000.0, 6000.0]) versus (type='float', bounds=[0.0, 9000.0])"
    ):
        concat([hippocampus("mgh"), wider], "both")


def test_one_table_declared_differently_on_the_two_sides_of_a_join_is_refused() -> None:
    left = create("t", [defCol("k", "int"), defCol("x", "int")], at="a")
    right = create("t", [defCol("k", "int"), defCol("y", "int")], at="b")

    with raises(
        "join 'j': table 't' is declared differently at a and at b: columns (k, x) versus (k, y); "
        "every party must declare the same columns"
    ):
        join(left, right, "j", ["k"], ["k"])


def test_aggregate_of_a_string_column_is_refused() -> None:
    with raises("aggregate 'a': fn mean needs a numeric over_col; 'gender' is str (only count applies)"):
        aggregate(employees(), "a", [], "gender", "mean", "m")


def test_count_of_a_string_column_is_allowed() -> None:
    rel = aggregate(employees(), "a", [], "gender", "count", "n")

    assert rel.relation == Aggregate(EMPLOYEES_SCAN, (), (AggregateSpec(AggFunc.COUNT, "gender", "n"),))


def test_aggregate_refuses_an_unknown_function() -> None:
    with raises(
        "aggregate 'a': fn 'mode' is not an aggregate function; use one of: "
        "+, count, max, mean, median, min, std, std_pop, sum, var, var_pop"
    ):
        aggregate(employees(), "a", ["gender"], "salary", "mode", "m")


def test_aggregate_refuses_an_internal_agg_func() -> None:
    with raises(
        "aggregate 'a': fn 'sum_squares' is not an aggregate function; use one of: "
        "+, count, max, mean, median, min, std, std_pop, sum, var, var_pop"
    ):
        aggregate(employees(), "a", ["gender"], "salary", AggFunc.SUM_SQUARES, "m")


def test_aggregate_without_over_col_only_counts() -> None:
    with raises("aggregate 'a': fn sum needs an over_col; only count may have none (it counts rows)"):
        aggregate(employees(), "a", ["gender"], None, "sum", "m")


def test_aggregate_output_names_must_differ_from_the_group_columns() -> None:
    with raises("aggregate_many 'a': the result's columns name 'gender' more than once"):
        aggregate_many(employees(), "a", ["gender"], [("count", None, "gender")])


def test_filter_refuses_an_unknown_operator() -> None:
    with raises("filter 'f': operator '=>' is not one of ==, !=, <, <=, >, >="):
        filter(employees(), "f", "hours", "=>", 40)


def test_filter_orders_only_numeric_columns() -> None:
    with raises("filter 'f': operator '<' needs a numeric column; 'gender' is str: use == or !="):
        filter(employees(), "f", "gender", "<", "M")


def test_filter_refuses_a_constant_of_another_type() -> None:
    with raises(
        "filter 'f': value '40' does not fit 'hours' (int); "
        "give a constant of type int, or col('name') for a column"
    ):
        filter(employees(), "f", "hours", "==", "40")


def test_filter_refuses_comparing_columns_of_different_types() -> None:
    with raises("filter 'f': cannot compare 'gender' (str) with 'hours' (int)"):
        filter(employees(), "f", "gender", "==", col("hours"))


def test_multiply_of_a_string_column_is_refused() -> None:
    with raises("multiply 'm': operand 'gender' is a str column; multiply needs numeric ones"):
        multiply(employees(), "m", "g2", ["gender", 2])


def test_multiply_refuses_to_overwrite_a_column() -> None:
    with raises("multiply 'm': target_col 'salary' is already a column of 'employees'; name a new column"):
        multiply(employees(), "m", "salary", ["salary", 2])


def test_multiply_needs_two_operands() -> None:
    with raises(
        "multiply 'm': operands must be a list of two or more column names or numbers, not ['salary']"
    ):
        multiply(employees(), "m", "s", ["salary"])


def test_divide_by_the_constant_zero_is_refused() -> None:
    with raises("divide 'd': operands divide by the constant 0"):
        divide(employees(), "d", "q", ["salary", 0])


def test_join_refuses_keys_of_different_types() -> None:
    left = create("l", [defCol("k", "int")], at="a")
    right = create("r", [defCol("k", "str")], at="b")

    with raises("join 'j': key 'k' is int but 'k' is str; keys need one type"):
        join(left, right, "j", ["k"], ["k"])


def test_join_refuses_a_column_name_on_both_sides() -> None:
    left = create("l", [defCol("k", "int"), defCol("x", "int")], at="a")
    right = create("r", [defCol("k", "int"), defCol("x", "int")], at="b")

    with raises("join 'j': both sides have column 'x'; project it away from one side first"):
        join(left, right, "j", ["k"], ["k"])


def test_join_needs_pairs_of_keys() -> None:
    left = create("l", [defCol("k", "int"), defCol("x", "int")], at="a")

    with raises("join 'j': left_cols has 2 columns but right_cols 1; give pairs"):
        join(left, left, "j", ["k", "x"], ["k"])


def test_defcol_refuses_an_unknown_type() -> None:
    with raises("defCol 'd': typ 'DATE' is not a column type; use INTEGER, FLOAT, STRING or BOOL"):
        defCol("d", "DATE")


def test_defcol_refuses_bounds_on_a_string_column() -> None:
    with raises("defCol 'g': bounds apply to numeric columns, not to str"):
        defCol("g", "str", bounds=(0, 1))


def test_defcol_refuses_bins_that_do_not_increase() -> None:
    with raises("defCol 'age': bins must be strictly increasing"):
        defCol("age", "int", bins=(18, 65, 40))


def test_defcol_refuses_categories_of_another_type() -> None:
    with raises("defCol 'g': categories of a str column must be str values, not [1, 2]"):
        defCol("g", "str", categories=[1, 2])


def test_defcol_refuses_a_name_that_is_not_an_identifier() -> None:
    with raises("defCol 'a b': name must be an identifier (letters, digits, _), not 'a b'"):
        defCol("a b", "int")


def test_create_refuses_repeated_columns_and_parties() -> None:
    with raises("create 't': columns name 'x' more than once"):
        create("t", [defCol("x", "int"), defCol("x", "float")], at="a")
    with raises("create 't': at name 'a' more than once"):
        create("t", [defCol("x", "int")], at=["a", "a"])


def test_create_refuses_party_ids_that_are_not_strings() -> None:
    with raises("create 't': at must be a party id or a set of them (non-empty strings), not {1}"):
        create("t", [defCol("x", "int")], at={1})  # type: ignore[arg-type]
    with raises("create 't': at must be a party id or a set of them (non-empty strings), not 1"):
        create("t", [defCol("x", "int")], at=1)  # type: ignore[arg-type]


def test_collect_needs_a_party() -> None:
    with raises("collect 'employees': to must be a party id (a non-empty string), not ''"):
        collect(employees(), "")


# -- agreement with the compiler ------------------------------------------------------------


def _hourly_gap() -> Rel:
    hourly = divide(employees(), "hourly", "per_hour", ["salary", "hours"])
    return aggregate(
        project(hourly, "kept", ["gender", "per_hour"]), "gap", ["gender"], "per_hour", "mean", "m"
    )


def _joined() -> Rel:
    patients = create("patients", [defCol("id", "int"), defCol("age", "int", bounds=(0, 120))], at="hospital")
    labs = create("labs", [defCol("pid", "int"), defCol("hba1c", "float", bounds=(3, 20))], at="lab")
    return filter(join(patients, labs, "joined", ["id"], ["pid"]), "old", "age", ">=", 65)


PROGRAMS = {
    "brain volume": lambda: aggregate_many(
        concat([hippocampus("mgh"), hippocampus("bwh")]),
        "stats",
        ["age_bin"],
        [("mean", "volume", "mean_volume"), ("std", "volume", "std_volume"), ("count", None, "n")],
    ),
    "pay gap by job": lambda: aggregate(employees(), "by_job", ["job"], "salary", "mean", "mean_salary"),
    "market total": lambda: aggregate(revenue(), "total", [], "amount", "sum", "total"),
    "hourly gap": _hourly_gap,
    "weighted": lambda: multiply(
        filter(employees(), "f", "salary", ">", col("hours")), "w", "w", ["hours", 2.5]
    ),
    "join": _joined,
}


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=PROGRAMS.keys())
def test_the_dsls_columns_are_the_compilers(program: Callable[[], Rel]) -> None:
    rel = program()
    query = collect(rel, "researcher")

    compiled = output_columns(query.relation, query.schema)

    assert [(name, info.type) for name, info in compiled.items()] == [(c.name, c.type) for c in rel.columns]


@pytest.mark.parametrize("program", ["brain volume", "pay gap by job", "market total"])
def test_the_seeds_programs_compile_to_a_plan(program: str) -> None:
    query = collect(PROGRAMS[program](), "researcher")

    assert isinstance(compile_plan(query.relation, query.schema), Plan)


# -- aggregates over aggregates, at the receiver --------------------------------------------


def _market_shares() -> Rel:
    per_company = aggregate(revenue(), "per_company", ["company"], "amount", "sum", "company_total")
    market = aggregate(per_company, "market", [], "company_total", "sum", "total")
    both = join(per_company, market, "both", [], [])
    return divide(both, "shares", "share", ["company_total", "total"])


def _hhi() -> Rel:
    squared = multiply(_market_shares(), "squared", "share_sq", ["share", "share"])
    return aggregate(squared, "hhi", [], "share_sq", "sum", "hhi")


def test_join_without_keys_is_a_cross_join() -> None:
    shares = _market_shares()

    per_company = Aggregate(
        REVENUE_SCAN, ("company",), (AggregateSpec(AggFunc.SUM, "amount", "company_total"),)
    )
    market = Aggregate(per_company, (), (AggregateSpec(AggFunc.SUM, "company_total", "total"),))
    assert shares.relation == Compute(
        Join(per_company, market, ()), "share", BinaryOp("/", ColumnRef("company_total"), ColumnRef("total"))
    )
    assert shares.column_names == ("company", "company_total", "total", "share")


def test_hhi_is_refused_unless_collect_reveals_the_per_company_totals() -> None:
    hidden = collect(_hhi(), "regulator")
    with pytest.raises(QueryError, match="needs the secret aggregate 'company_total' in the clear"):
        compile_plan(hidden.relation, hidden.schema)

    revealed = collect(_hhi(), "regulator", reveal=["company_total"])

    assert revealed.relation == Collect(_hhi().relation, "regulator", ("company_total",))
    assert isinstance(compile_plan(revealed.relation, revealed.schema), Plan)


def test_collect_refuses_to_reveal_what_is_no_aggregate_of_the_program() -> None:
    with raises(
        "collect 'hhi': reveal: 'amount' is not an aggregate of the program; its aggregates are: "
        "company_total, total, hhi"
    ):
        collect(_hhi(), "regulator", reveal=["amount"])
