"""examples/pay_gap: women's and men's average pay per job over three employers, and the ratio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import COLLABORATION, InProcessConsortium
from tests.examples.conftest import pooled, released, schema, start, text

EXAMPLE = "pay_gap"
BY_GENDER = (
    "SELECT count(*) FILTER (gender = 'F'), count(*) FILTER (gender = 'M'), "
    "avg(compensation) FILTER (gender = 'F'), avg(compensation) FILTER (gender = 'M') FROM pooled"
)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    running = start(tmp_path_factory.mktemp(EXAMPLE), EXAMPLE, hospitals=3, count=80)
    try:
        yield running
    finally:
        running.close()


def test_average_pay_by_gender_per_job_and_the_ratio_match_the_pooled_rows(
    consortium: InProcessConsortium,
) -> None:
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, text(EXAMPLE, "query.sql"), schema(EXAMPLE), timeout_s=60)

    # A node withholds a job's women (or men) where it employs fewer than its min_count of them.
    root = consortium.local.root
    women = released(root, "employees", "job", "compensation", "gender = 'F'")
    men = released(root, "employees", "job", "compensation", "gender = 'M'")
    expected = []
    for job in ("engineer", "analyst", "sales", "manager"):
        (w, w_sum), (m, m_sum) = women[job], men[job]
        expected.append(
            {
                "job": job,
                "women": w,
                "men": m,
                "women_avg": pytest.approx(w_sum / w, abs=1e-3),
                "men_avg": pytest.approx(m_sum / m, abs=1e-3),
                "ratio": pytest.approx((w_sum / w) / (m_sum / m), rel=1e-6),
            }
        )
    assert list(rows) == expected
    withheld = {
        job
        for job in ("engineer", "analyst", "sales", "manager")
        if any(n < 5 for n in _per_node_counts(root, job))
    }
    assert {w.removeprefix("job=") for w in rows.withheld} == withheld


def test_the_gap_over_all_jobs_matches_the_pooled_rows(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, text(EXAMPLE, "overall.sql"), schema(EXAMPLE), timeout_s=60)

    [(_, _, women_avg, men_avg)] = (
        pooled(consortium.local.root, "employees").query("pooled", BY_GENDER).fetchall()
    )
    assert list(rows) == [
        {
            "women_avg": pytest.approx(women_avg, abs=1e-3),
            "men_avg": pytest.approx(men_avg, abs=1e-3),
            "ratio": pytest.approx(women_avg / men_avg, rel=1e-6),
        }
    ]
    assert rows[0]["ratio"] < 1  # the generated payrolls pay women less


def _per_node_counts(root: Path, job: str) -> list[int]:
    """Each node's count of women and of men in ``job``."""
    counts = []
    for file in sorted(root.glob("node-*/employees.*")):
        sql = (
            "SELECT count(*) FILTER (gender = 'F'), count(*) FILTER (gender = 'M') "
            f"FROM '{file}' WHERE job = '{job}'"
        )
        [(women, men)] = duckdb.sql(sql).fetchall()
        counts.extend((women, men))
    return counts
