"""A federated grouped mean and standard deviation over 3 nodes x N Parquet rows, against pooled DuckDB.

The query (10 groups)::

    SELECT ward, COUNT(*) AS n, AVG(los_days) AS mean, STDDEV(los_days) AS sd
    FROM stays GROUP BY ward

- *federated*: hub and 3 nodes as separate processes on loopback with TLS; each node
  holds one Parquet file of ``--rows`` rows, runs its local part as DuckDB SQL over it,
  and the partial sums are combined by secure aggregation; timed from the researcher's
  submit to the finalised rows in its hands (``Client.run_query``).
- *pooled*: DuckDB running the same query over the three files together in one process
  (one connection, the files read by ``read_parquet``), the plaintext baseline.

The files are generated once (seeded) into ``--data`` and reused. ``--rows`` takes a
comma-separated list; each size is measured pooled and federated side by side.

    python benchmarks/federated_query.py --rows 1000000,10000000 --runs 5 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import machine, write_section

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium

PARTIES = 3
WARDS = [f"ward-{i:02d}" for i in range(10)]
SQL = "SELECT ward, COUNT(*) AS n, AVG(los_days) AS mean, STDDEV(los_days) AS sd FROM stays GROUP BY ward"
COLUMNS = {"ward": "str", "age": "int", "los_days": "float"}


def schema(node_ids: list[str]) -> dict[str, Any]:
    """The federation schema: ward categories, bounded length of stay."""
    return {
        "tables": {
            "stays": {
                "parties": node_ids,
                "columns": {
                    "ward": {"type": "str", "categories": WARDS},
                    "age": {"type": "int", "bounds": [0, 120]},
                    "los_days": {"type": "float", "bounds": [0, 365]},
                },
            }
        }
    }


def generate(folder: Path, rows: int) -> list[Path]:
    """One Parquet file per party (seeded), written once and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for party in range(PARTIES):
        path = folder / f"stays-{party}-{rows}.parquet"
        files.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(1000 + party)
        wards = pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(0, len(WARDS), rows, dtype=np.int32)), pa.array(WARDS)
        ).cast(pa.string())
        table = pa.table(
            {
                "ward": wards,
                "age": pa.array(rng.integers(0, 100, rows)),
                "los_days": pa.array(np.minimum(rng.gamma(2.0, 2.5 + party, rows), 365.0)),
            }
        )
        pq.write_table(table, path, row_group_size=1_000_000)
    return files


def pooled(files: list[Path], runs: int) -> tuple[float, list[tuple[Any, ...]]]:
    """Median seconds of DuckDB over all files in one process, and its rows."""
    times, rows = [], []
    listing = ", ".join(f"'{f}'" for f in files)
    sql = SQL.replace("FROM stays", f"FROM read_parquet([{listing}])") + " ORDER BY ward"
    for _ in range(runs):
        with duckdb.connect() as connection:
            start = time.perf_counter()
            rows = connection.execute(sql).fetchall()
            times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def federated(
    files: list[Path], runs: int, policy: dict[str, Any] | None = None
) -> tuple[float, list[dict[str, object]]]:
    """Median seconds of the query through hub and nodes, and its rows (after one warm-up)."""

    def tables(node_id: str, index: int, folder: Path) -> list[dict[str, Any]]:
        return [{"name": "stays", "format": "parquet", "path": str(files[index]), "columns": COLUMNS}]

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalConsortium(Path(tmp), hospitals=PARTIES, tables=tables, policy=policy) as consortium,
        Client(consortium.researcher_kit, timeout_s=600) as client,
    ):
        federation = schema(consortium.node_ids)
        client.run_query(COLLABORATION, SQL, federation, timeout_s=600)  # warm-up
        times, result = [], None
        for _ in range(runs):
            start = time.perf_counter()
            result = client.run_query(COLLABORATION, SQL, federation, timeout_s=600)
            times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), list(result)


NO_RECORD = {"tables": {"stays": {"differencing": False}}}
"""The node policy that keeps no release record of ``stays`` (no row-level pass)."""


def measure(rows: int, folder: Path, runs: int) -> tuple[float, float, float, float]:
    """Pooled, federated and federated-without-record seconds for ``rows`` per node; the worst difference."""
    files = generate(folder, rows)
    plain_s, plain_rows = pooled(files, runs)
    print(f"{rows:,} rows per node: pooled DuckDB {plain_s:.3f} s", flush=True)
    secure_s, secure_rows = federated(files, runs)
    print(f"{rows:,} rows per node: federated {secure_s:.3f} s ({secure_s / plain_s:.2f}x)", flush=True)
    bare_s, _ = federated(files, runs, NO_RECORD)
    print(f"{rows:,} rows per node: federated, no release record {bare_s:.3f} s", flush=True)
    worst = 0.0
    for (ward, n, mean, sd), row in zip(plain_rows, secure_rows, strict=True):
        if row["ward"] != ward or row["n"] != n:
            raise SystemExit(f"mismatch in {ward}: pooled n={n}, federated {row}")
        worst = max(worst, abs(float(row["mean"]) - mean), abs(float(row["sd"]) - sd))  # type: ignore[arg-type]
    print(f"largest difference of a mean or sd from the pooled answer: {worst:.2e}")
    return plain_s, secure_s, bare_s, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000000", help="rows per party; a comma-separated list")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "confide-bench-query")
    parser.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",") if r.strip()]
    lines = []
    for rows in sizes:
        plain_s, secure_s, bare_s, worst = measure(rows, args.data, args.runs)
        lines.append(
            f"| {rows:,} | {plain_s:.3f} | {secure_s:.3f} | {secure_s / plain_s:.2f}x | {bare_s:.3f} "
            f"| {worst:.1e} |"
        )
    if args.write:
        write_section(
            "federated_query",
            "Federated query: grouped mean and std over 3 x N Parquet rows (issues 5, 14, 15)",
            [
                f"Command: `python benchmarks/federated_query.py --rows {args.rows} --runs {args.runs} "
                f"--write` ({machine()}; hub and {PARTIES} nodes as separate processes, TLS, websocket). "
                f"Median of {args.runs} runs after one warm-up; the query has 10 groups. Each size is "
                "measured pooled, then federated, in one run of the command. Federated includes the "
                "node's per-cell min_count and its release record (a second, row-level pass that "
                "lists which rows each group used); the last but one column is the same with the "
                "release record turned off (`policy.tables.stays.differencing: false`).",
                "",
                "| rows per node | pooled DuckDB s | federated s | federated / pooled | no release record s "
                "| max abs diff |",
                "|---:|---:|---:|---:|---:|---:|",
                *lines,
            ],
        )


if __name__ == "__main__":
    main()
