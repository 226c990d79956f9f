"""The SQL front end: SQL text in, the hand-built IR tree out; and each refusal's message."""

from __future__ import annotations

import re

import pytest

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    Collect,
    ColumnRef,
    Compare,
    CompareOp,
    Compute,
    Concat,
    Expr,
    Filter,
    Join,
    Literal,
    Not,
    Project,
    Scan,
)
from confide.query._schema import FederationSchema
from confide.query._sql import parse_sql
from confide.query.passes import compile_plan

EMPLOYERS = ("acme", "globex", "initech")
SCHEMA = FederationSchema.model_validate(
    {
        "tables": {
            "employees": {
                "parties": EMPLOYERS,
                "columns": {
                    "gender": {"type": "str", "categories": ["F", "M"]},
                    "job": {"type": "str", "categories": ["engineer", "manager", "sales"], "other": True},
                    "salary": {"type": "float", "bounds": [0, 1_000_000]},
                    "age": {"type": "int", "bounds": [18, 67], "bins": [18, 30, 40, 50, 67]},
                },
            },
            "revenue": {
                "parties": EMPLOYERS,
                "columns": {
                    "company": {"type": "str", "categories": list(EMPLOYERS)},
                    "amount": {"type": "float", "bounds": [0, 1e9]},
                },
            },
            "companies": {
                "parties": ["registry"],
                "columns": {
                    "company": {"type": "str", "categories": list(EMPLOYERS)},
                    "sector": {"type": "str", "categories": ["tech", "retail"]},
                },
            },
        }
    }
)


def _employees() -> Concat:
    return Concat(tuple(Scan("employees", p) for p in EMPLOYERS))


def _revenue() -> Concat:
    return Concat(tuple(Scan("revenue", p) for p in EMPLOYERS))


def _col(name: str) -> ColumnRef:
    return ColumnRef(name)


# -- SQL -> IR --------------------------------------------------------------------------


def test_grouped_mean_with_where() -> None:
    sql = "SELECT gender, AVG(salary) AS mean_salary FROM employees WHERE age >= 30 GROUP BY gender"

    relation = parse_sql(sql, SCHEMA)

    assert relation == Collect(
        Aggregate(
            Filter(_employees(), Compare(CompareOp.GE, _col("age"), Literal(30))),
            ("gender",),
            (AggregateSpec(AggFunc.MEAN, "salary", "mean_salary"),),
        ),
        to="researcher",
    )


def test_count_star_without_group_by_and_collect_to() -> None:
    relation = parse_sql("SELECT COUNT(*) FROM employees", SCHEMA, to="alice")

    assert relation == Collect(
        Aggregate(_employees(), (), (AggregateSpec(AggFunc.COUNT, None, "count"),)), "alice"
    )


def test_in_and_between() -> None:
    sql = "SELECT COUNT(*) AS n FROM employees WHERE job IN ('sales', 'engineer') AND age BETWEEN 30 AND 49"

    relation = parse_sql(sql, SCHEMA)

    job_in = BoolExpr(
        BoolOp.OR,
        (
            Compare(CompareOp.EQ, _col("job"), Literal("sales")),
            Compare(CompareOp.EQ, _col("job"), Literal("engineer")),
        ),
    )
    age_between = BoolExpr(
        BoolOp.AND,
        (Compare(CompareOp.GE, _col("age"), Literal(30)), Compare(CompareOp.LE, _col("age"), Literal(49))),
    )
    predicate = BoolExpr(BoolOp.AND, (job_in, age_between))
    assert relation == Collect(
        Aggregate(Filter(_employees(), predicate), (), (AggregateSpec(AggFunc.COUNT, None, "n"),)),
        "researcher",
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("salary <> 10", Compare(CompareOp.NE, _col("salary"), Literal(10))),
        ("salary != 1.5", Compare(CompareOp.NE, _col("salary"), Literal(1.5))),
        ("salary < -2", Compare(CompareOp.LT, _col("salary"), Literal(-2))),
        ("salary <= 1e3", Compare(CompareOp.LE, _col("salary"), Literal(1000.0))),
        ("gender = 'F'", Compare(CompareOp.EQ, _col("gender"), Literal("F"))),
        ("job = NULL", Compare(CompareOp.EQ, _col("job"), Literal(None))),
        ("TRUE", Literal(True)),
        ("job IN ('sales')", Compare(CompareOp.EQ, _col("job"), Literal("sales"))),
        ("NOT job IN ('sales')", Not(Compare(CompareOp.EQ, _col("job"), Literal("sales")))),
        (
            "age NOT BETWEEN 30 AND 40",
            Not(
                BoolExpr(
                    BoolOp.AND,
                    (
                        Compare(CompareOp.GE, _col("age"), Literal(30)),
                        Compare(CompareOp.LE, _col("age"), Literal(40)),
                    ),
                )
            ),
        ),
        (
            "(salary + 1) * 2 / age - -age > 0",
            Compare(
                CompareOp.GT,
                BinaryOp(
                    "-",
                    BinaryOp(
                        "/", BinaryOp("*", BinaryOp("+", _col("salary"), Literal(1)), Literal(2)), _col("age")
                    ),
                    BinaryOp("-", Literal(0), _col("age")),
                ),
                Literal(0),
            ),
        ),
        (
            "age > 1 OR (age > 2 OR age > 3)",  # nested ORs flatten into one
            BoolExpr(BoolOp.OR, tuple(Compare(CompareOp.GT, _col("age"), Literal(n)) for n in (1, 2, 3))),
        ),
        (
            "e.age > 1 AND NOT (age > 2 OR age > 3)",
            BoolExpr(
                BoolOp.AND,
                (
                    Compare(CompareOp.GT, _col("age"), Literal(1)),
                    Not(
                        BoolExpr(
                            BoolOp.OR, tuple(Compare(CompareOp.GT, _col("age"), Literal(n)) for n in (2, 3))
                        )
                    ),
                ),
            ),
        ),
    ],
)
def test_where_expressions(where: str, expected: Expr) -> None:
    relation = parse_sql(f"SELECT COUNT(*) FROM employees AS e WHERE {where}", SCHEMA)

    assert relation.input == Aggregate(
        Filter(_employees(), expected), (), (AggregateSpec(AggFunc.COUNT, None, "count"),)
    )


def test_join_with_aliases_orients_the_keys() -> None:
    sql = """
        SELECT c.sector, SUM(r.amount) AS total
        FROM revenue AS r JOIN companies c ON c.company = r.company
        GROUP BY c.sector
    """

    relation = parse_sql(sql, SCHEMA)

    joined = Join(_revenue(), Scan("companies", "registry"), (("company", "company"),))
    assert relation == Collect(
        Aggregate(joined, ("sector",), (AggregateSpec(AggFunc.SUM, "amount", "total"),)), "researcher"
    )


def test_three_way_join_is_left_deep() -> None:
    sql = """
        SELECT c.sector, AVG(e.salary) AS s
        FROM employees e
        JOIN revenue r ON e.job = r.company
        JOIN companies c ON c.company = r.company
        GROUP BY c.sector
    """

    relation = parse_sql(sql, SCHEMA)

    inner = Join(_employees(), _revenue(), (("job", "company"),))
    joined = Join(inner, Scan("companies", "registry"), (("company", "company"),))
    assert relation == Collect(
        Aggregate(joined, ("sector",), (AggregateSpec(AggFunc.MEAN, "salary", "s"),)), "researcher"
    )


def test_join_using_makes_the_key_unambiguous() -> None:
    relation = parse_sql("SELECT company, sector FROM revenue JOIN companies USING (company)", SCHEMA)

    joined = Join(_revenue(), Scan("companies", "registry"), (("company", "company"),))
    assert relation == Collect(Project(joined, ("company", "sector")), "researcher")


def test_arithmetic_over_aggregates() -> None:
    sql = "SELECT job, AVG(salary) AS avg, SUM(salary) / COUNT(*) AS also_avg FROM employees GROUP BY job"

    relation = parse_sql(sql, SCHEMA)

    aggregate = Aggregate(
        _employees(),
        ("job",),
        (
            AggregateSpec(AggFunc.MEAN, "salary", "avg"),
            AggregateSpec(AggFunc.SUM, "salary", "__sum_salary"),
            AggregateSpec(AggFunc.COUNT, None, "__count_rows"),
        ),
    )
    ratio = Compute(aggregate, "also_avg", BinaryOp("/", _col("__sum_salary"), _col("__count_rows")))
    assert relation == Collect(Project(ratio, ("job", "avg", "also_avg")), "researcher")


def test_with_queries_are_read_as_tables_and_a_cross_join_adds_the_total() -> None:
    sql = """
        WITH per_company AS (SELECT company, SUM(amount) AS revenue FROM revenue GROUP BY company),
             market AS (SELECT SUM(revenue) AS total FROM per_company)
        SELECT company, revenue, revenue / total AS share FROM per_company CROSS JOIN market
    """

    relation = parse_sql(sql, SCHEMA)

    per_company = Aggregate(_revenue(), ("company",), (AggregateSpec(AggFunc.SUM, "amount", "revenue"),))
    market = Aggregate(per_company, (), (AggregateSpec(AggFunc.SUM, "revenue", "total"),))
    share = Compute(Join(per_company, market, ()), "share", BinaryOp("/", _col("revenue"), _col("total")))
    assert relation == Collect(Project(share, ("company", "revenue", "share")), "researcher")


def test_from_a_comma_b_is_a_cross_join() -> None:
    sql = "WITH a AS (SELECT COUNT(*) AS n FROM employees), b AS (SELECT SUM(amount) AS s FROM revenue) "

    relation = parse_sql(sql + "SELECT n, s FROM a, b", SCHEMA)

    a = Aggregate(_employees(), (), (AggregateSpec(AggFunc.COUNT, None, "n"),))
    b = Aggregate(_revenue(), (), (AggregateSpec(AggFunc.SUM, "amount", "s"),))
    assert relation == Collect(Project(Join(a, b, ()), ("n", "s")), "researcher")


def test_two_groups_averages_side_by_side_by_joining_two_with_queries() -> None:
    sql = """
        WITH women AS (SELECT job, AVG(salary) AS women FROM employees WHERE gender = 'F' GROUP BY job),
             men AS (SELECT job, AVG(salary) AS men FROM employees WHERE gender = 'M' GROUP BY job)
        SELECT job, women / men AS ratio FROM women JOIN men USING (job)
    """

    relation = parse_sql(sql, SCHEMA)

    def mean_pay(gender: str, out: str) -> Aggregate:
        chosen = Filter(_employees(), Compare(CompareOp.EQ, _col("gender"), Literal(gender)))
        return Aggregate(chosen, ("job",), (AggregateSpec(AggFunc.MEAN, "salary", out),))

    joined = Join(mean_pay("F", "women"), mean_pay("M", "men"), (("job", "job"),))
    ratio = Compute(joined, "ratio", BinaryOp("/", _col("women"), _col("men")))
    assert relation == Collect(Project(ratio, ("job", "ratio")), "researcher")


def test_a_cross_join_of_rows_across_parties_is_refused_when_compiled() -> None:
    relation = parse_sql("SELECT COUNT(*) FROM employees CROSS JOIN companies", SCHEMA)

    with pytest.raises(QueryError, match="cross join across parties acme, globex, initech, registry needs"):
        compile_plan(relation, SCHEMA)


def test_arithmetic_over_aggregates_compiles() -> None:
    sql = (
        "SELECT job, AVG(salary) * 100 AS pct, SUM(salary) / COUNT(*) AS also_avg FROM employees GROUP BY job"
    )

    plan = compile_plan(parse_sql(sql, SCHEMA), SCHEMA)

    assert "secure sum over acme, globex, initech" in plan.explain()


def test_corr() -> None:
    relation = parse_sql("SELECT gender, CORR(salary, age) FROM employees GROUP BY gender", SCHEMA)

    spec = AggregateSpec(AggFunc.CORR, "salary", "corr_salary_age", other="age")
    assert relation == Collect(Aggregate(_employees(), ("gender",), (spec,)), "researcher")


@pytest.mark.parametrize(
    ("call", "func", "column", "out"),
    [
        ("SUM(salary)", AggFunc.SUM, "salary", "sum_salary"),
        ("AVG(salary)", AggFunc.MEAN, "salary", "avg_salary"),
        ("COUNT(salary)", AggFunc.COUNT, "salary", "count_salary"),
        ("COUNT(1)", AggFunc.COUNT, None, "count"),
        ("VARIANCE(salary)", AggFunc.VAR, "salary", "variance_salary"),
        ("VAR_SAMP(salary)", AggFunc.VAR, "salary", "variance_salary"),
        ("VAR_POP(salary)", AggFunc.VAR_POP, "salary", "var_pop_salary"),
        ("STDDEV(salary)", AggFunc.STD, "salary", "stddev_salary"),
        ("STDDEV_SAMP(salary)", AggFunc.STD, "salary", "stddev_samp_salary"),
        ("STDDEV_POP(salary)", AggFunc.STD_POP, "salary", "stddev_pop_salary"),
        ("MEDIAN(salary)", AggFunc.MEDIAN, "salary", "median_salary"),
        ("PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY salary)", AggFunc.MEDIAN, "salary", "median_salary"),
        ("MIN(salary)", AggFunc.MIN, "salary", "min_salary"),
        ("max(salary)", AggFunc.MAX, "salary", "max_salary"),
        ("COUNT(DISTINCT job)", AggFunc.COUNT_DISTINCT, "job", "count_distinct_job"),
    ],
)
def test_aggregate_functions(call: str, func: AggFunc, column: str | None, out: str) -> None:
    relation = parse_sql(f"SELECT {call} FROM employees", SCHEMA)

    assert relation.input == Aggregate(_employees(), (), (AggregateSpec(func, column, out),))


def test_select_star_is_every_column_in_schema_order() -> None:
    relation = parse_sql("SELECT * FROM employees", SCHEMA)

    assert relation == Collect(Project(_employees(), ("gender", "job", "salary", "age")), "researcher")


def test_single_party_table_is_a_scan() -> None:
    relation = parse_sql("SELECT sector, COUNT(*) AS n FROM companies GROUP BY sector", SCHEMA)

    scan = Scan("companies", "registry")
    assert relation == Collect(
        Aggregate(scan, ("sector",), (AggregateSpec(AggFunc.COUNT, None, "n"),)), "researcher"
    )


def test_unquoted_names_fold_to_lower_case_and_quoted_ones_stay() -> None:
    relation = parse_sql('SELECT Gender, Avg(SALARY) AS "Mean" FROM Employees GROUP BY GENDER', SCHEMA)

    spec = AggregateSpec(AggFunc.MEAN, "salary", "Mean")
    assert relation == Collect(Aggregate(_employees(), ("gender",), (spec,)), "researcher")


def test_having_filters_the_groups() -> None:
    sql = "SELECT job, COUNT(*) AS n FROM employees GROUP BY 1 HAVING COUNT(*) > 10 AND AVG(salary) < 5e4"

    relation = parse_sql(sql, SCHEMA)

    aggregate = Aggregate(
        _employees(),
        ("job",),
        (AggregateSpec(AggFunc.COUNT, None, "n"), AggregateSpec(AggFunc.MEAN, "salary", "__mean_salary")),
    )
    having = BoolExpr(
        BoolOp.AND,
        (
            Compare(CompareOp.GT, _col("n"), Literal(10)),
            Compare(CompareOp.LT, _col("__mean_salary"), Literal(50000.0)),
        ),
    )
    assert relation == Collect(Project(Filter(aggregate, having), ("job", "n")), "researcher")


def test_aggregate_of_an_expression_computes_it_per_row_first() -> None:
    relation = parse_sql("SELECT SUM(salary * 12) AS yearly FROM employees", SCHEMA)

    per_row = Compute(_employees(), "__arg1", BinaryOp("*", _col("salary"), Literal(12)))
    assert relation == Collect(
        Aggregate(per_row, (), (AggregateSpec(AggFunc.SUM, "__arg1", "yearly"),)), "researcher"
    )


def test_renamed_group_column_and_select_order() -> None:
    relation = parse_sql("SELECT COUNT(*) AS n, job AS role FROM employees GROUP BY job", SCHEMA)

    aggregate = Aggregate(_employees(), ("job",), (AggregateSpec(AggFunc.COUNT, None, "n"),))
    assert relation == Collect(Project(Compute(aggregate, "role", _col("job")), ("n", "role")), "researcher")


def test_row_level_columns_become_a_project() -> None:
    relation = parse_sql("SELECT job, salary / 1000 AS k FROM employees", SCHEMA)

    computed = Compute(_employees(), "k", BinaryOp("/", _col("salary"), Literal(1000)))
    assert relation == Collect(Project(computed, ("job", "k")), "researcher")


# -- refusals ---------------------------------------------------------------------------


def test_collect_needs_a_receiver() -> None:
    with pytest.raises(QueryError, match="to must name the party that receives the result"):
        parse_sql("SELECT COUNT(*) FROM employees", SCHEMA, to="")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT job FROM employees WHERE", "SQL syntax error at line 1, col 27 near 'WHERE'"),
        (
            "SELECT job\nFROM employees\nWHERE salary > )",
            "SQL syntax error at line 3, col 16 near ')': Required keyword: 'expression' missing for GT",
        ),
        ("", "0 statements: a federated query is exactly one SELECT statement"),
        ("SELECT 1; SELECT 2", "2 statements: a federated query is exactly one SELECT statement"),
        (
            "INSERT INTO employees VALUES (1)",
            "INSERT is not supported: a federated query is exactly one SELECT",
        ),
        ("DROP TABLE employees", "DROP is not supported"),
        (
            "SELECT job FROM employees UNION SELECT company FROM revenue",
            "UNION/INTERSECT/EXCEPT is not supported",
        ),
        (
            "SELECT job FROM staff",
            "unknown table 'staff'; the federation declares: companies, employees, revenue",
        ),
        (
            "SELECT AVG(salry) FROM employees",
            "unknown column 'salry' at line 1, col 12; employees has: gender, job",
        ),
        ('SELECT "Job" FROM employees', "unknown column 'Job'"),
        (
            "SELECT x.job FROM employees e",
            "unknown table or alias in x.job at line 1, col 8; the query reads: empl",
        ),
        (
            "SELECT company FROM revenue r JOIN companies c ON r.company = c.company",
            "column 'company' at line 1, col 8 is ambiguous: revenue (r) and companies (c) both have it; "
            "write r.company or c.company",
        ),
        (
            "SELECT job FROM employees WHERE job LIKE 'e%'",
            "LIKE is not supported in WHERE (job LIKE 'e%' at line 1",
        ),
        (
            "SELECT job FROM employees WHERE job IS NULL",
            "IS [NOT] NULL (the IR has no test for missing values)",
        ),
        ("SELECT LOWER(job) FROM employees", "function LOWER() is not supported in SELECT"),
        (
            "SELECT job, SUM(salary) OVER (PARTITION BY job) FROM employees",
            "window functions are not supported at line 1, col 13: SUM(salary) OVER (PARTITION BY job)",
        ),
        (
            "SELECT job, COUNT(*) FROM employees GROUP BY job ORDER BY job",
            "ORDER BY is not supported: results of aggregates are returned per group in the domain's order",
        ),
        ("SELECT COUNT(*) FROM employees LIMIT 1", "LIMIT is not supported"),
        ("SELECT DISTINCT job FROM employees", "SELECT DISTINCT is not supported"),
        (
            "WITH RECURSIVE t AS (SELECT job FROM employees) SELECT COUNT(*) FROM t",
            "WITH RECURSIVE is not supported",
        ),
        (
            "WITH employees AS (SELECT job FROM employees) SELECT COUNT(*) FROM employees",
            "WITH employees: the federation has a table of that name; rename the WITH query",
        ),
        (
            "WITH t AS (SELECT job FROM employees), t AS (SELECT job FROM employees) SELECT COUNT(*) FROM t",
            "WITH t at line 1, col 40: a WITH query of that name exists already; rename one",
        ),
        (
            "WITH t(j) AS (SELECT job FROM employees) SELECT COUNT(*) FROM t",
            "column lists and MATERIALIZED are not supported",
        ),
        (
            "WITH t AS (SELECT job FROM employees UNION SELECT job FROM revenue) SELECT COUNT(*) FROM t",
            "a WITH query is one SELECT, not UNION",
        ),
        (
            "WITH t AS (WITH u AS (SELECT job FROM employees) SELECT job FROM u) SELECT COUNT(*) FROM t",
            "WITH inside a WITH query is not supported",
        ),
        (
            "WITH t AS (SELECT job FROM employees) SELECT COUNT(*) FROM u",
            "unknown table 'u' at line 1, col 60; the federation and WITH declare: companies, employees, "
            "revenue, t",
        ),
        ("SELECT COUNT(*) FROM employees WHERE age IN (SELECT 1)", "subqueries are not supported at line 1"),
        (
            "SELECT COUNT(*) FROM (SELECT job FROM employees) s",
            "subqueries are not supported at line 1, col 30: (SELECT job FROM employees) AS s; give it a "
            "name in WITH, then read it by that name as a table",
        ),
        ("SELECT 1", "SELECT without FROM is not supported"),
        ("SELECT COUNT(*) FROM x.employees", "name federated tables without a schema or catalog"),
        (
            "SELECT COUNT(*) FROM revenue r LEFT JOIN companies c ON r.company = c.company",
            "LEFT JOIN at line 1",
        ),
        (
            "SELECT COUNT(*) FROM revenue NATURAL JOIN companies",
            "NATURAL JOIN at line 1, col 43 is not supported: only inner equi-joins (JOIN b ON a.x = b.y) "
            "and cross joins",
        ),
        (
            "SELECT COUNT(*) FROM revenue r JOIN companies c ON r.company = c.company AND r.amount > 3",
            "JOIN ... ON r.amount > 3 at line 1, col 78 is not supported: only equalities between columns",
        ),
        (
            "SELECT COUNT(*) FROM revenue r JOIN companies c ON c.company = c.sector",
            "compare a column of companies (c) with a column of the tables before it",
        ),
        (
            "SELECT COUNT(*) FROM employees a JOIN employees b ON a.job = b.job",
            "JOIN employees (b) at line 1, col 39: both sides have columns ['age', 'gender', 'salary']",
        ),
        (
            "SELECT COUNT(*) FROM revenue JOIN revenue USING (company)",
            "table name 'revenue' appears twice in FROM",
        ),
        (
            "SELECT job, salary FROM employees GROUP BY job",
            "column 'salary' at line 1, col 13 in SELECT is neither in GROUP BY nor inside an aggregate",
        ),
        (
            "SELECT COUNT(*) FROM employees HAVING age > 3",
            "column 'age' at line 1, col 39 in HAVING is neither",
        ),
        (
            "SELECT COUNT(*) FROM employees WHERE SUM(age) > 3",
            "is not allowed in WHERE; filter groups with HAVING",
        ),
        (
            "SELECT SUM(AVG(age)) FROM employees",
            "aggregate AVG(age) at line 1, col 12 is not allowed in the argument",
        ),
        (
            "SELECT SUM(DISTINCT age) FROM employees",
            "aggregate SUM(DISTINCT age) at line 1, col 8 is not supported",
        ),
        ("SELECT STRING_AGG(job, ',') FROM employees", "aggregate STRING_AGG(job, ',') at line 1"),
        (
            "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY age) FROM employees",
            "only PERCENTILE_CONT(0.5), the median, is supported",
        ),
        ("SELECT * FROM employees GROUP BY job", "SELECT * with GROUP BY or aggregates is not supported"),
        (
            "SELECT job FROM employees GROUP BY LOWER(job)",
            "GROUP BY LOWER(job) at line 1, col 36 is not supported",
        ),
        ("SELECT job FROM employees GROUP BY ROLLUP (job)", "GROUP BY ROLLUP (job) at line 1, col 44 is not"),
        ("SELECT job FROM employees GROUP BY job WITH ROLLUP", "GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL"),
        (
            "SELECT AVG(age), AVG(age) FROM employees",
            "output column 'avg_age' appears twice in the SELECT list",
        ),
        ("SELECT COUNT(*) AS job FROM employees GROUP BY job", "output 'job' is also a GROUP BY column"),
        ("SELECT salary * 2 AS salary FROM employees", "output 'salary' is also a column of the input"),
        ("SELECT COUNT(*) AS __n FROM employees", "alias '__n' at line 1, col 8: names beginning with '__'"),
    ],
)
def test_refusals_name_the_construct(sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_sql(sql, SCHEMA)
