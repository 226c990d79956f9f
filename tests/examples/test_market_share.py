"""examples/market_share: revenue per company over three chains, shares of the total, and HHI.

HHI squares the shares, which needs every company's total in the clear: refused when the
query does not reveal them, computed when it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from confide.query import (
    DenseLayout,
    FederationSchema,
    Plan,
    QueryError,
    compile_plan,
    finalise,
    secure_aggregates,
)
from tests.conftest import COLLABORATION, InProcessConsortium
from tests.examples.conftest import load, pooled, schema, start, text
from tests.query._duckdb import run_local_duckdb

EXAMPLE = "market_share"
COMPANIES = ("contoso", "fabrikam", "northwind", "tailspin", "wingtip")


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    running = start(tmp_path_factory.mktemp(EXAMPLE), EXAMPLE, hospitals=3, count=120)
    try:
        yield running
    finally:
        running.close()


def _revenue(root: Path) -> dict[str, float]:
    query = "SELECT company, sum(revenue) FROM pooled GROUP BY company"
    return dict(pooled(root, "sales").query("pooled", query).fetchall())


def _hhi(revenue: dict[str, float]) -> float:
    total = sum(revenue.values())
    return sum((100 * r / total) ** 2 for r in revenue.values())


def test_revenue_total_and_shares_match_the_pooled_rows(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, text(EXAMPLE, "query.sql"), schema(EXAMPLE), timeout_s=60)

    revenue = _revenue(consortium.local.root)
    total = sum(revenue.values())
    assert list(rows) == [
        {
            "company": c,
            "revenue": pytest.approx(revenue[c], abs=1e-2),
            "total": pytest.approx(total, abs=1e-2),
            "share": pytest.approx(revenue[c] / total, abs=1e-8),
        }
        for c in COMPANIES
    ]


def test_hhi_without_the_per_company_totals_is_refused_before_anything_is_sent(
    consortium: InProcessConsortium,
) -> None:
    with consortium.client() as client, pytest.raises(QueryError) as refused:
        client.run_query(COLLABORATION, text(EXAMPLE, "hhi.sql"), schema(EXAMPLE))

    message = str(refused.value)
    assert message.startswith("sum(share * share) at the receiver combines the values of several groups")
    assert "needs the secret aggregate 'revenue' in the clear (sum(revenue) by company over node-a" in message
    assert "need general MPC" in message and "put 'revenue' in the result" in message


def test_hhi_is_computed_when_the_per_company_totals_are_revealed(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        rows = client.run_query(
            COLLABORATION, text(EXAMPLE, "hhi_revealed.sql"), schema(EXAMPLE), timeout_s=60
        )

    revenue = _revenue(consortium.local.root)
    assert [r["company"] for r in rows] == list(COMPANIES)
    assert [r["hhi"] for r in rows] == [pytest.approx(_hhi(revenue), abs=1e-3)] * len(COMPANIES)


def test_the_dsls_hhi_needs_reveal_and_then_gives_the_pooled_value(consortium: InProcessConsortium) -> None:
    query = load(EXAMPLE, "query")
    hidden = query.hhi(reveal_totals=False)
    with pytest.raises(QueryError, match="needs the secret aggregate 'revenue' in the clear"):
        compile_plan(hidden.relation, hidden.schema)

    revealed = query.hhi(reveal_totals=True)
    plan = compile_plan(revealed.relation, revealed.schema)

    # The secure sum stood in for by adding the chains' local vectors in the clear.
    rows = _run_locally(plan, revealed.schema, consortium.local.root)
    assert rows == [{"hhi": pytest.approx(_hhi(_revenue(consortium.local.root)), abs=1e-6)}]


def _run_locally(plan: Plan, federation: FederationSchema, root: Path) -> list[dict[str, object]]:
    [aggregate] = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, federation, max_rows=10_000)
    parties = federation.tables["sales"].parties
    vectors = [
        run_local_duckdb(aggregate, p, layout, {"sales": next((root / p).glob("sales.*"))}) for p in parties
    ]
    return finalise(plan, {0: np.sum(vectors, axis=0)}, [layout])
