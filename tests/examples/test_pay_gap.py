"""examples/pay_gap: women's and men's average pay per job over three employers, and the ratio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import COLLABORATION, InProcessConsortium
from tests.examples.conftest import pooled, schema, start, text

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

    expected = []
    for job in ("engineer", "analyst", "sales", "manager"):
        [(women, men, women_avg, men_avg)] = (
            pooled(consortium.local.root, "employees")
            .query("pooled", f"{BY_GENDER} WHERE job = '{job}'")
            .fetchall()
        )
        expected.append(
            {
                "job": job,
                "women": women,
                "men": men,
                "women_avg": pytest.approx(women_avg, abs=1e-3),
                "men_avg": pytest.approx(men_avg, abs=1e-3),
                "ratio": pytest.approx(women_avg / men_avg, rel=1e-6),
            }
        )
    assert list(rows) == expected


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
