"""Local SQL for secure sums and the receiver's finalisation, against plain numpy over the pooled rows.

Each party's CSV (one party's Parquet) is generated with a seeded rng; each query runs
every party's local part in DuckDB, the dense vectors are added in float (standing in for
the secure sum), and :func:`finalise` must give what numpy gives over all rows together.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import psycopg
import pytest

from confide._errors import QueryError
from confide.query._ir import AggFunc, Aggregate, AggregateSpec, Collect, Concat, Project, Scan
from confide.query._layout import DenseLayout, dense_vector, secure_aggregates
from confide.query._local_sql import local_sql
from confide.query._receiver import finalise
from confide.query._schema import FederationSchema
from confide.query._sql import parse_sql
from confide.query.passes import Plan, compile_plan
from tests.query._duckdb import run_local_duckdb

PARTIES = ("acme", "globex", "initech")
COLUMNS = ("gender", "job", "age", "salary", "hours", "bonus")
SCHEMA = FederationSchema.model_validate(
    {
        "tables": {
            "employees": {
                "parties": PARTIES,
                "columns": {
                    "gender": {"type": "str", "categories": ["F", "M"]},
                    "job": {"type": "str", "categories": ["engineer", "manager", "sales"], "other": True},
                    "age": {"type": "int", "bins": [18, 30, 40, 50, 67]},
                    "salary": {"type": "float", "bounds": [0, 300_000]},
                    "hours": {"type": "float", "bounds": [1, 80]},
                    "bonus": {"type": "float", "bounds": [0, 50_000]},
                },
            }
        }
    }
)
MAX_ROWS = 100_000
AGE_BINS = ("[18, 30)", "[30, 40)", "[40, 50)", "[50, 67)")

Row = dict[str, object]
Files = Mapping[str, Mapping[str, Path]]  # party -> table -> file
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Federation:
    files: Files
    pooled: dict[str, npt.NDArray[np.generic]]  # every party's rows together, column by column


def _employees(rng: np.random.Generator, n: int) -> dict[str, list[object]]:
    age = rng.integers(18, 67, n)
    salary = np.clip(30_000 + 1_500 * (age - 18) + rng.normal(0, 8_000, n), 0, 300_000)
    bonus = np.round(rng.uniform(0, 20_000, n), 2)
    return {
        "gender": list(rng.choice(["F", "M"], n)),
        "job": list(
            rng.choice(["engineer", "manager", "sales", "intern", "cto"], n, p=[0.4, 0.2, 0.3, 0.07, 0.03])
        ),
        "age": [int(a) for a in age],
        "salary": [float(s) for s in salary],
        "hours": [float(h) for h in np.round(20 + salary / 10_000 + rng.uniform(0, 25, n), 3)],
        "bonus": [
            None if missing else float(b) for b, missing in zip(bonus, rng.random(n) < 0.2, strict=True)
        ],
    }


def _write_csv(path: Path, rows: Mapping[str, Sequence[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows)
        writer.writerows(
            zip(*(["" if v is None else v for v in values] for values in rows.values()), strict=True)
        )
    return path


def _to_parquet(csv_path: Path) -> Path:
    parquet = csv_path.with_suffix(".parquet")
    with duckdb.connect() as connection:
        connection.execute(
            f"COPY (SELECT * FROM read_csv_auto('{csv_path}')) TO '{parquet}' (FORMAT parquet)"
        )
    return parquet


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    rng = np.random.default_rng(20240607)
    directory = tmp_path_factory.mktemp("federation")
    files: dict[str, dict[str, Path]] = {}
    pooled: dict[str, list[object]] = {c: [] for c in COLUMNS}
    for party, n in zip(PARTIES, (300, 250, 350), strict=True):
        data = _employees(rng, n)
        path = _write_csv(directory / f"{party}.csv", data)
        files[party] = {"employees": _to_parquet(path) if party == "initech" else path}
        for column in COLUMNS:
            pooled[column] += data[column]
    arrays = {c: np.asarray(v) for c, v in pooled.items()}
    arrays["bonus"] = np.asarray([np.nan if b is None else b for b in pooled["bonus"]], dtype=float)
    return Federation(files, arrays)


def _plan(sql: str) -> Plan:
    return compile_plan(parse_sql(sql, SCHEMA), SCHEMA)


def _add(vectors: Iterable[Vector]) -> Vector:
    """What the secure sum computes, in the clear and in float."""
    total: Vector = np.stack(list(vectors)).sum(axis=0)
    return total


def _federated(sql: str, files: Files) -> list[Row]:
    """The query run as the system would: local parts per party, the vectors added, finalised."""
    plan = _plan(sql)
    aggregates = secure_aggregates(plan)
    layouts = [DenseLayout.for_aggregate(a, SCHEMA, max_rows=MAX_ROWS) for a in aggregates]
    totals = {
        index: _add(run_local_duckdb(aggregate, p, layouts[index], files[p]) for p in PARTIES)
        for index, aggregate in enumerate(aggregates)
    }
    return finalise(plan, totals, layouts)


def _by(
    pooled: Mapping[str, npt.NDArray[np.generic]], mask: npt.NDArray[np.bool_]
) -> dict[str, npt.NDArray[np.generic]]:
    return {c: v[mask] for c, v in pooled.items()}


def _approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9)


# -- results against numpy --------------------------------------------------------------


def test_grouped_mean_and_sample_std_match_the_pooled_rows(federation: Federation) -> None:
    rows = _federated(
        "SELECT gender, AVG(salary) AS mean, STDDEV(salary) AS sd FROM employees GROUP BY gender",
        federation.files,
    )

    salary, gender = federation.pooled["salary"].astype(float), federation.pooled["gender"]
    assert rows == [
        {
            "gender": g,
            "mean": _approx(salary[gender == g].mean()),
            "sd": _approx(salary[gender == g].std(ddof=1)),
        }
        for g in ("F", "M")
    ]


def test_count_rows_with_unknown_job_titles_in_the_other_bucket(federation: Federation) -> None:
    rows = _federated("SELECT job, COUNT(*) AS n FROM employees GROUP BY job", federation.files)

    job = federation.pooled["job"]
    assert rows == [
        {"job": "engineer", "n": np.sum(job == "engineer")},
        {"job": "manager", "n": np.sum(job == "manager")},
        {"job": "sales", "n": np.sum(job == "sales")},
        {"job": "other", "n": np.sum((job == "intern") | (job == "cto"))},
    ]


def test_where_with_in_and_between_filters_at_every_party(federation: Federation) -> None:
    rows = _federated(
        "SELECT gender, COUNT(*) AS n, SUM(salary) AS total FROM employees "
        "WHERE job IN ('engineer', 'sales') AND age BETWEEN 30 AND 49 GROUP BY gender",
        federation.files,
    )

    p = federation.pooled
    chosen = np.isin(p["job"], ["engineer", "sales"]) & (p["age"] >= 30) & (p["age"] <= 49)  # type: ignore[operator]
    expected = [
        {
            "gender": g,
            "n": np.sum(chosen & (p["gender"] == g)),
            "total": _approx(p["salary"][chosen & (p["gender"] == g)].sum()),
        }
        for g in ("F", "M")
    ]
    assert rows == expected


def test_two_group_keys_give_every_gender_and_age_bin_first_key_slowest(federation: Federation) -> None:
    rows = _federated(
        "SELECT gender, age, COUNT(*) AS n, AVG(hours) AS h FROM employees GROUP BY gender, age",
        federation.files,
    )

    p = federation.pooled
    bins = np.digitize(p["age"].astype(float), [30, 40, 50])
    expected: list[Row] = []
    for g in ("F", "M"):
        for index, label in enumerate(AGE_BINS):
            mask = (p["gender"] == g) & (bins == index)
            expected.append(
                {
                    "gender": g,
                    "age": label,
                    "n": np.sum(mask),
                    "h": _approx(p["hours"][mask].astype(float).mean()),
                }
            )
    assert rows == expected


def test_correlation_and_a_ratio_of_sums(federation: Federation) -> None:
    rows = _federated(
        "SELECT CORR(salary, hours) AS r, SUM(salary) / SUM(hours) AS per_hour FROM employees",
        federation.files,
    )

    salary, hours = federation.pooled["salary"].astype(float), federation.pooled["hours"].astype(float)
    assert rows == [
        {"r": _approx(np.corrcoef(salary, hours)[0, 1]), "per_hour": _approx(salary.sum() / hours.sum())}
    ]


def test_per_row_computations_run_locally(federation: Federation) -> None:
    rows = _federated(
        "SELECT gender, AVG(salary / hours) AS rate, SUM(salary * 12) AS annual "
        "FROM employees GROUP BY gender",
        federation.files,
    )

    p = federation.pooled
    salary, hours = p["salary"].astype(float), p["hours"].astype(float)
    assert rows == [
        {
            "gender": g,
            "rate": _approx((salary / hours)[p["gender"] == g].mean()),
            "annual": _approx((salary * 12)[p["gender"] == g].sum()),
        }
        for g in ("F", "M")
    ]


def test_nulls_are_skipped_as_sql_does(federation: Federation) -> None:
    rows = _federated(
        "SELECT COUNT(*) AS n, COUNT(bonus) AS with_bonus, AVG(bonus) AS mean FROM employees",
        federation.files,
    )

    bonus = federation.pooled["bonus"].astype(float)
    assert rows == [{"n": 900, "with_bonus": np.sum(~np.isnan(bonus)), "mean": _approx(np.nanmean(bonus))}]


def test_an_aggregate_at_the_receiver_over_revealed_groups(federation: Federation) -> None:
    by_job = Aggregate(
        Concat(tuple(Scan("employees", p) for p in PARTIES)),
        ("gender", "job"),
        (AggregateSpec(AggFunc.SUM, "salary", "total"),),
    )
    outer = Aggregate(
        Project(by_job, ("gender", "job", "total")),
        ("gender",),
        (
            AggregateSpec(AggFunc.SUM, "total", "total"),
            AggregateSpec(AggFunc.COUNT, None, "jobs"),
            AggregateSpec(AggFunc.MEAN, "total", "mean"),
        ),
    )
    plan = compile_plan(Collect(outer, "researcher", reveal=("total",)), SCHEMA)  # the per-job totals
    [aggregate] = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=MAX_ROWS)
    total = _add(run_local_duckdb(aggregate, p, layout, federation.files[p]) for p in PARTIES)

    rows = finalise(plan, {0: total}, [layout])

    p = federation.pooled
    sums = {g: p["salary"][p["gender"] == g].astype(float).sum() for g in ("F", "M")}
    assert rows == [
        {"gender": g, "total": _approx(sums[g]), "jobs": 4, "mean": _approx(sums[g] / 4)} for g in ("F", "M")
    ]


# -- domains ----------------------------------------------------------------------------


def _one_party_files(tmp_path: Path, **changes: list[object]) -> Files:
    """Every party holds two in-domain rows; acme's rows get ``changes``."""
    base: dict[str, list[object]] = {
        "gender": ["F", "M"],
        "job": ["engineer", "sales"],
        "age": [25, 45],
        "salary": [50_000.0, 60_000.0],
        "hours": [40.0, 38.5],
        "bonus": [None, 100.0],
    }
    return {
        p: {"employees": _write_csv(tmp_path / f"{p}.csv", {**base, **(changes if p == "acme" else {})})}
        for p in PARTIES
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"gender": ["F", "X"]},
            r"GROUP BY gender: a value \(or NULL\) is outside its declared categories F, M",
        ),
        ({"age": [25, 70]}, r"GROUP BY age: a value \(or NULL\) is outside its declared bins \[18, 67\)"),
        ({"gender": ["F", None]}, r"GROUP BY gender: a value \(or NULL\) is outside"),
    ],
)
def test_a_key_outside_its_domain_is_refused_naming_the_column_but_not_the_value(
    tmp_path: Path, changes: dict[str, list[object]], message: str
) -> None:
    files = _one_party_files(tmp_path, **changes)

    with pytest.raises(QueryError, match=message) as refused:
        _federated("SELECT gender, age, COUNT(*) AS n FROM employees GROUP BY gender, age", files)

    assert "'X'" not in str(refused.value) and "70" not in str(refused.value)


def test_a_key_outside_its_domain_is_fine_when_filtered_out(tmp_path: Path) -> None:
    files = _one_party_files(tmp_path, gender=["F", "X"])

    rows = _federated(
        "SELECT gender, COUNT(*) AS n FROM employees WHERE salary < 55000 GROUP BY gender", files
    )

    assert rows == [{"gender": "F", "n": 3}, {"gender": "M", "n": 0}]


def test_unknown_and_missing_jobs_go_to_the_other_bucket(tmp_path: Path) -> None:
    files = _one_party_files(tmp_path, job=["astronaut", None])

    rows = _federated("SELECT job, COUNT(*) AS n, AVG(salary) AS mean FROM employees GROUP BY job", files)

    assert rows == [
        {"job": "engineer", "n": 2, "mean": 50_000},
        {"job": "manager", "n": 0, "mean": None},  # 0 / 0
        {"job": "sales", "n": 2, "mean": 60_000},
        {"job": "other", "n": 2, "mean": 55_000},
    ]


def test_string_literals_are_quoted_not_interpolated(tmp_path: Path) -> None:
    files = _one_party_files(tmp_path, job=["it's", "x'); DROP TABLE t; --"])

    rows = _federated(
        "SELECT COUNT(*) AS n FROM employees WHERE job = 'it''s' OR job = 'x''); DROP TABLE t; --'", files
    )

    assert rows == [{"n": 2}]


# -- layout, vectors, finalisation ------------------------------------------------------


def test_layout_shape_bounds_and_labels() -> None:
    aggregate = Aggregate(
        Concat(tuple(Scan("employees", p) for p in PARTIES)),
        ("gender", "age"),
        (
            AggregateSpec(AggFunc.COUNT, None, "n"),
            AggregateSpec(AggFunc.SUM, "salary", "s"),
            AggregateSpec(AggFunc.SUM_SQUARES, "salary", "ss"),
            AggregateSpec(AggFunc.SUM_PRODUCTS, "salary", "sp", "hours"),
        ),
    )

    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=10)

    assert (layout.groups, layout.length) == (8, 32)
    assert layout.spec_bounds == (10, 10 * 300_000, 10 * 300_000**2, 10 * 300_000 * 80)
    assert layout.bounds.tolist() == list(layout.spec_bounds) * 8
    assert layout.labels()[:5] == [{"gender": "F", "age": label} for label in AGE_BINS] + [
        {"gender": "M", "age": "[18, 30)"}
    ]


def test_a_local_sum_beyond_the_layouts_bounds_is_refused(federation: Federation) -> None:
    [aggregate] = secure_aggregates(_plan("SELECT COUNT(*) AS n FROM employees"))
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=100)

    with pytest.raises(
        QueryError, match=r"count\(\*\) exceeds the bound the secure sum can encode"
    ) as refused:
        run_local_duckdb(aggregate, "acme", layout, federation.files["acme"])

    assert "300" not in str(refused.value)  # the node's own count stays there


def test_a_party_outside_the_secure_sum_is_refused() -> None:
    [aggregate] = secure_aggregates(_plan("SELECT COUNT(*) AS n FROM employees"))
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=MAX_ROWS)

    with pytest.raises(QueryError, match="'hooli' holds no input of this secure sum"):
        local_sql(aggregate, "hooli", layout, dialect="duckdb", source=str)


def test_dense_vector_places_rows_and_leaves_empty_groups_zero() -> None:
    [aggregate] = secure_aggregates(
        _plan("SELECT gender, job, SUM(salary) AS s FROM employees GROUP BY gender, job")
    )
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=MAX_ROWS)

    vector = dense_vector([(1, 3, 7.5, 2, None, None), (0, 1, None, 0, None, None)], layout)

    # Every group: SUM(salary), then the hidden COUNT(*) every secure sum carries.
    assert [s.out for s in layout.specs] == ["s", "__count_rows"]
    assert vector.tolist() == [0] * 14 + [7.5, 2]


def test_finalise_gives_none_for_division_by_zero_and_noisy_negative_variances() -> None:
    plan = _plan("SELECT gender, AVG(salary) AS m, STDDEV(salary) AS sd FROM employees GROUP BY gender")
    [aggregate] = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=MAX_ROWS)
    values = {
        "F": {"__count_salary": 0.0},
        "M": {"__count_salary": 3.0, "__sum_salary": 6.0, "__sum_squares_salary": 1.0},
    }
    total = np.asarray([values[g].get(s.out, 0.0) for g in ("F", "M") for s in layout.specs])

    rows = finalise(plan, {0: total}, [layout])

    assert rows == [{"gender": "F", "m": None, "sd": None}, {"gender": "M", "m": 2.0, "sd": None}]


# -- PostgreSQL -------------------------------------------------------------------------

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres() -> Iterator[psycopg.Connection[Any]]:
    try:
        connection = psycopg.connect(POSTGRES, connect_timeout=2)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL at {POSTGRES} is not reachable: {error}")
    with connection:
        yield connection


def test_the_postgres_dialect_runs_on_postgresql_and_agrees_with_duckdb(
    federation: Federation, postgres: psycopg.Connection[Any]
) -> None:
    connection = postgres
    acme = federation.files["acme"]["employees"]
    with duckdb.connect() as db:
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM read_csv_auto('{acme}')").fetchall()
    connection.execute(
        'CREATE TEMP TABLE "Employees" (gender text, job text, age integer, salary double precision, '
        "hours double precision, bonus double precision)"
    )
    with connection.cursor() as cursor:
        cursor.executemany('INSERT INTO "Employees" VALUES (%s, %s, %s, %s, %s, %s)', rows)
    plan = _plan(
        "SELECT gender, age, AVG(salary / hours) AS rate, STDDEV(salary) AS sd, CORR(salary, hours) AS r, "
        "CORR(bonus, salary) AS rb, AVG(bonus) AS b, COUNT(*) AS n FROM employees "
        "WHERE job IN ('engineer', 'sales') AND NOT age BETWEEN 60 AND 66 GROUP BY gender, age"
    )
    [aggregate] = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, SCHEMA, max_rows=MAX_ROWS)
    sql = local_sql(aggregate, "acme", layout, dialect="postgres", source=lambda table: '"Employees"')

    from_postgres = dense_vector(connection.execute(sql).fetchall(), layout)

    np.testing.assert_allclose(
        from_postgres, run_local_duckdb(aggregate, "acme", layout, {"employees": acme}), rtol=1e-12
    )
    connection.execute("""INSERT INTO "Employees" VALUES ('X', 'sales', 30, 1, 1, NULL)""")
    with pytest.raises(QueryError, match=r"GROUP BY gender: a value \(or NULL\) is outside"):
        dense_vector(connection.execute(sql).fetchall(), layout)


def test_having_filters_the_revealed_groups(federation: Federation) -> None:
    rows = _federated(
        "SELECT job, COUNT(*) AS n FROM employees GROUP BY job HAVING COUNT(*) > 200", federation.files
    )

    job = federation.pooled["job"]
    counts = {j: np.sum(job == j) for j in ("engineer", "manager", "sales")}
    assert rows == [{"job": j, "n": n} for j, n in counts.items() if n > 200]
    assert 0 < len(rows) < 3


# -- CORR, joins and totals at the receiver ------------------------------------------------


def test_corr_over_a_column_with_nulls_uses_only_the_complete_pairs(federation: Federation) -> None:
    rows = _federated(
        "SELECT gender, CORR(salary, bonus) AS r FROM employees GROUP BY gender", federation.files
    )

    p = federation.pooled
    salary, bonus = p["salary"].astype(float), p["bonus"].astype(float)
    both = ~np.isnan(bonus)
    expected = {
        g: np.corrcoef(salary[both & (p["gender"] == g)], bonus[both & (p["gender"] == g)])[0, 1]
        for g in ("F", "M")
    }
    assert rows == [{"gender": g, "r": _approx(expected[g])} for g in ("F", "M")]
    pooled = " UNION ALL ".join(
        f"SELECT gender, salary, bonus FROM '{federation.files[party]['employees']}'" for party in PARTIES
    )
    with duckdb.connect() as connection:
        duck = dict(
            connection.execute(
                f"SELECT gender, corr(salary, bonus) FROM ({pooled}) GROUP BY gender"
            ).fetchall()
        )
    assert rows == [{"gender": g, "r": _approx(duck[g])} for g in ("F", "M")]


def test_shares_of_a_total_and_hhi_from_revealed_per_job_totals(federation: Federation) -> None:
    by_job = "WITH by_job AS (SELECT job, SUM(salary) AS pay FROM employees GROUP BY job), "
    total = "everyone AS (SELECT SUM(pay) AS total FROM by_job), "
    shares = "shares AS (SELECT job, pay, pay / total AS share FROM by_job CROSS JOIN everyone), "
    hhi = "hhi AS (SELECT SUM(share * share) AS hhi FROM shares) "
    sql = by_job + total + shares + hhi + "SELECT job, pay, share, hhi FROM shares CROSS JOIN hhi"

    assert len(secure_aggregates(_plan(sql))) == 1  # by_job is read twice but summed once
    rows = _federated(sql, federation.files)

    p = federation.pooled
    salary, job = p["salary"].astype(float), p["job"]
    pay = {j: salary[job == j].sum() for j in ("engineer", "manager", "sales")}
    pay["other"] = salary[np.isin(job, ["intern", "cto"])].sum()
    share = {j: v / salary.sum() for j, v in pay.items()}
    hhi_value = sum(s * s for s in share.values())
    assert rows == [
        {"job": j, "pay": _approx(pay[j]), "share": _approx(share[j]), "hhi": _approx(hhi_value)} for j in pay
    ]


def test_a_ratio_of_two_groups_averages_joined_on_their_key(federation: Federation) -> None:
    sql = """
        WITH women AS (SELECT age, AVG(salary) AS women FROM employees WHERE gender = 'F' GROUP BY age),
             men AS (SELECT age, AVG(salary) AS men FROM employees WHERE gender = 'M' GROUP BY age)
        SELECT age, women, men, women / men AS ratio FROM women JOIN men USING (age)
    """

    rows = _federated(sql, federation.files)

    p = federation.pooled
    salary, bins = p["salary"].astype(float), np.digitize(p["age"].astype(float), [30, 40, 50])
    expected: list[Row] = []
    for index, label in enumerate(AGE_BINS):
        women = salary[(bins == index) & (p["gender"] == "F")].mean()
        men = salary[(bins == index) & (p["gender"] == "M")].mean()
        expected.append(
            {"age": label, "women": _approx(women), "men": _approx(men), "ratio": _approx(women / men)}
        )
    assert rows == expected
