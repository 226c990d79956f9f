"""Synthetic sales for the market-share example, one table per data holder.

Three retail chains each hold ``sales``: one row per invoice line with the manufacturer
(company) whose product was sold, the region of the shop and the revenue in euros. Each
chain favours some manufacturers, so no chain alone sees the market as it is. Seeded: a
chain always gets the same rows. Chains A and B write CSV, C Parquet.

``python generate.py OUT`` writes every chain's file under ``OUT/node-a`` ... ``OUT/node-c``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CHAINS = ("node-a", "node-b", "node-c")
SALES = 600
COLUMNS = {"sale_id": "str", "company": "str", "region": "str", "revenue": "float"}
COMPANIES = ("contoso", "fabrikam", "northwind", "tailspin", "wingtip")
REGIONS = ("north", "east", "south", "west")
# How often each chain sells each company's products (rows of weights, one per chain).
PREFERENCE = np.array([[5, 3, 2, 1, 1], [2, 4, 3, 1, 2], [6, 1, 1, 2, 1]], dtype=float)


def sales(index: int, count: int = SALES) -> pa.Table:
    """Chain number ``index``'s ``sales``: ``count`` invoice lines."""
    rng = np.random.default_rng(20260601 + index)
    weights = PREFERENCE[index] / PREFERENCE[index].sum()
    company = rng.choice(COMPANIES, count, p=weights)
    revenue = rng.lognormal(np.log(800), 0.9, count).clip(1, 99_999)
    return pa.table(
        {
            "sale_id": [f"{CHAINS[index]}-{i:06d}" for i in range(count)],
            "company": company.tolist(),
            "region": rng.choice(REGIONS, count).tolist(),
            "revenue": np.round(revenue, 2),
        }
    )


def write(node_id: str, index: int, folder: Path, count: int = SALES) -> list[dict[str, Any]]:
    """Write chain ``index``'s table into ``folder``; return its ``data:`` entries for ``node.yaml``."""
    path = folder / ("sales.parquet" if index == 2 else "sales.csv")
    table = sales(index, count)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return [{"name": "sales", "format": path.suffix[1:], "path": path.name, "columns": COLUMNS}]


def main(out: Path) -> None:
    """Write every chain's data under ``out``."""
    for index, node_id in enumerate(CHAINS):
        folder = out / node_id
        folder.mkdir(parents=True, exist_ok=True)
        for entry in write(node_id, index, folder):
            print(folder / entry["path"])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
