"""Run the pay-gap example on a local consortium of three employers and print the answers.

Starts a hub and three nodes as local processes (as ``confide demo`` does; the demo's
"hospitals" stand in for employers), each holding its generated ``employees``; runs
``query.sql`` (by job category) and ``overall.sql`` by secure aggregation. No employer
sees another's payroll; the researcher sees only the averages and their ratios.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from generate import write

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium

HERE = Path(__file__).parent


def main() -> None:
    """Start the consortium, run both queries, print their results."""
    schema = yaml.safe_load((HERE / "schema.yaml").read_text())
    with (
        tempfile.TemporaryDirectory(prefix="confide-pay-gap-") as tmp,
        LocalConsortium(Path(tmp), hospitals=3, tables=write) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        by_job = client.run_query(COLLABORATION, (HERE / "query.sql").read_text(), schema, timeout_s=60)
        overall = client.run_query(COLLABORATION, (HERE / "overall.sql").read_text(), schema, timeout_s=60)
    print(f"{'job':<10} {'women':>5} {'men':>5} {'women avg':>10} {'men avg':>10} {'ratio':>6}")
    for row in by_job:
        print(
            f"{row['job']:<10} {row['women']:>5.0f} {row['men']:>5.0f} "
            f"{row['women_avg']:>10,.0f} {row['men_avg']:>10,.0f} {row['ratio']:>6.3f}"
        )
    [total] = overall
    print(
        f"{'all jobs':<10} {'':>5} {'':>5} {total['women_avg']:>10,.0f} {total['men_avg']:>10,.0f} "
        f"{total['ratio']:>6.3f}"
    )


if __name__ == "__main__":
    main()
