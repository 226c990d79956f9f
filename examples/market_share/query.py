"""The market-share queries in the Conclave-style DSL.

:func:`shares` builds the same plan as ``query.sql``. :func:`hhi` builds the
Herfindahl-Hirschman index; the compiler refuses it unless ``collect`` may reveal the
per-company totals it squares (``reveal=["revenue"]``). ``python query.py`` prints the
shares' plan and what the compiler says about HHI both ways.
"""

from __future__ import annotations

from confide.query import (
    Query,
    QueryError,
    Rel,
    aggregate,
    collect,
    compile_plan,
    create,
    defCol,
    divide,
    join,
    multiply,
    project,
)

CHAINS = ["node-a", "node-b", "node-c"]
COMPANIES = ["contoso", "fabrikam", "northwind", "tailspin", "wingtip"]


def _shares() -> Rel:
    sales = create(
        "sales",
        [
            defCol("sale_id", "STRING"),
            defCol("company", "STRING", categories=COMPANIES),
            defCol("region", "STRING", categories=["north", "east", "south", "west"]),
            defCol("revenue", "FLOAT", bounds=[0, 100_000]),
        ],
        at=CHAINS,
    )
    per_company = aggregate(sales, "per_company", ["company"], "revenue", "sum", "revenue")
    market = aggregate(per_company, "market", [], "revenue", "sum", "total")
    both = join(per_company, market, "both", [], [])  # no keys: each company with the total
    return divide(both, "shares", "share", ["revenue", "total"])


def shares() -> Query:
    """Each company's revenue over all chains, the total, and each company's share."""
    return collect(project(_shares(), "result", ["company", "revenue", "total", "share"]), to="researcher")


def hhi(reveal_totals: bool) -> Query:
    """The Herfindahl-Hirschman index (squared shares in percent, summed); see the module's note."""
    squared = multiply(_shares(), "squared", "share_sq", ["share", "share"])
    summed = aggregate(squared, "summed", [], "share_sq", "sum", "sum_sq")
    index = project(multiply(summed, "hhi", "hhi", ["sum_sq", 10_000]), "result", ["hhi"])
    return collect(index, to="researcher", reveal=["revenue"] if reveal_totals else [])


if __name__ == "__main__":
    query = shares()
    print(compile_plan(query.relation, query.schema).explain())
    for reveal_totals in (False, True):
        query = hhi(reveal_totals)
        try:
            compile_plan(query.relation, query.schema)
        except QueryError as refusal:
            print(f"\nHHI without revealing the per-company totals is refused: {refusal}")
        else:
            print("\nHHI with reveal=['revenue'] compiles: it runs at the researcher")
