"""``confide demo``: a throwaway consortium of three hospitals, one task, a table, a clean exit.

The demo checks its own answer: each node's summary must equal the same statistics
computed here from that hospital's generated file, or the demo exits non-zero.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from rich.console import Console

from confide._errors import ConfideError, TaskError
from confide.cli._consortium import COLLABORATION, LocalConsortium
from confide.cli._render import print_results
from confide.cli._sample import patients
from confide.client import Client, TaskResults

__all__ = ["run_demo"]

COLUMNS = ["age", "hippocampus_ml", "ventricles_ml", "brain_ml"]


def run_demo(console: Console, *, keep: Path | None = None, port: int = 0) -> None:
    """Run the demo; raise :class:`ConfideError` (exit 1) on any failure."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="confide-demo-") as tmp:
        root = keep or Path(tmp)
        consortium = LocalConsortium(root, port=port)
        console.print(f"[bold]confide demo[/]: 3 hospitals, 1 researcher, hub on {consortium.hub_url}")
        try:
            with console.status("provisioning kits and starting the hub and 3 nodes"):
                consortium.start()
            console.print(
                f"  hub and nodes {', '.join(consortium.node_ids)} online "
                f"({time.monotonic() - started:.1f} s)"
            )
            with Client(consortium.researcher_kit) as client:
                results = client.run(
                    COLLABORATION,
                    "stats.summary",
                    {"table": "patients", "columns": COLUMNS},
                    progress=True,
                    timeout_s=60,
                )
            print_results(console, results)
            results.raise_for_errors()
            _check(results, consortium.rows)
        except ConfideError:
            console.print(
                f"[red]demo failed[/]; logs are in {root / 'logs'}"
                + ("" if keep else " (removed on exit: use --keep DIR)")
            )
            raise
        finally:
            consortium.close()
    console.print(
        f"[green]demo finished[/] in {time.monotonic() - started:.1f} s: results opened by the "
        "researcher only; the hub relayed sealed bytes."
    )


def _check(results: TaskResults, rows: int) -> None:
    for index, result in enumerate(results):
        table = patients(index, rows)
        for column in COLUMNS:
            values = table.column(column).to_numpy().astype(float)
            got = (result.output or {})["columns"][column]
            expected = (values.size, values.mean(), values.std(ddof=1), values.min(), values.max())
            actual = (got["count"], got["mean"], got["std"], got["min"], got["max"])
            if got["count"] != values.size or not all(
                math.isclose(a, b, rel_tol=1e-9) for a, b in zip(actual[1:], expected[1:], strict=True)
            ):
                raise TaskError(f"{result.node} {column}: got {actual}, expected {expected}")
