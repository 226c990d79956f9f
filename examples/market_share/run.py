"""Run the market-share example on a local consortium of three retail chains and print the answers.

Starts a hub and three nodes as local processes (as ``confide demo`` does; the demo's
"hospitals" stand in for retail chains), each holding its generated ``sales``. Runs
``query.sql`` (revenue per company, total, shares) by secure aggregation; shows the
compiler refusing ``hhi.sql`` (HHI without revealing the per-company totals) before
anything is sent; then runs ``hhi_revealed.sql``, which reveals them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from generate import write

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium
from confide.query import QueryError

HERE = Path(__file__).parent


def main() -> None:
    """Start the consortium, run the three queries, print what each gives."""
    schema = yaml.safe_load((HERE / "schema.yaml").read_text())
    with (
        tempfile.TemporaryDirectory(prefix="confide-market-") as tmp,
        LocalConsortium(Path(tmp), hospitals=3, tables=write) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        shares = client.run_query(COLLABORATION, (HERE / "query.sql").read_text(), schema, timeout_s=60)
        refusal = "none: it ran"
        try:
            client.run_query(COLLABORATION, (HERE / "hhi.sql").read_text(), schema, timeout_s=60)
        except QueryError as error:
            refusal = str(error)
        revealed = client.run_query(
            COLLABORATION, (HERE / "hhi_revealed.sql").read_text(), schema, timeout_s=60
        )
    print(f"{'company':<10} {'revenue':>12} {'share':>7}")
    for row in shares:
        print(f"{row['company']:<10} {row['revenue']:>12,.2f} {row['share']:>7.2%}")
    print(f"{'total':<10} {shares[0]['total']:>12,.2f}")
    print(f"\nhhi.sql, the per-company totals not revealed, is refused:\n  {refusal}")
    print(f"\nhhi_revealed.sql: HHI = {revealed[0]['hhi']:,.0f}")


if __name__ == "__main__":
    main()
