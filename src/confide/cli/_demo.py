"""``confide demo``: a throwaway consortium of three hospitals, two tasks, tables, a clean exit.

1. ``stats.summary``: each hospital's own summary, sealed to the researcher;
2. ``stats.zscore`` by secure aggregation, the brain-volume example: how many standard
   deviations a 67-year-old patient's hippocampus volume lies from the mean of his age
   group across all three hospitals; the hub sees only masked vectors.

The demo checks its own answers against the same statistics computed here from the
generated files (pooled, for the z-score), or exits non-zero.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from confide._errors import ConfideError, TaskError
from confide.cli._render import print_finalised, print_results
from confide.client import Client, StatisticResult, TaskResults
from confide.local import COLLABORATION, LocalConsortium, patients

__all__ = ["run_demo"]

COLUMNS = ["age", "hippocampus_ml", "ventricles_ml", "brain_ml"]
PATIENT_VOLUME_ML = 6.4
ZSCORE = {
    "table": "patients",
    "column": "hippocampus_ml",
    "bounds": (3.0, 11.0),
    "value": PATIENT_VOLUME_ML,
    "group_by": [{"column": "age", "bins": [0, 40, 50, 60, 70, 80, 120]}],
    "group": {"age": 67},
}


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
                with console.status("stats.zscore by secure aggregation across the 3 hospitals"):
                    zscore = client.run_statistic(COLLABORATION, "stats.zscore", ZSCORE, timeout_s=60)
            print_finalised(console, zscore)
            _check_zscore(zscore, consortium.rows)
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


def _check_zscore(result: StatisticResult, rows: int) -> None:
    pooled = [patients(i, rows) for i in range(3)]
    age = np.concatenate([t.column("age").to_numpy() for t in pooled])
    volume = np.concatenate([t.column("hippocampus_ml").to_numpy() for t in pooled])
    group = volume[(age >= 60) & (age < 70)]
    expected = (PATIENT_VOLUME_ML - group.mean()) / group.std(ddof=1)
    got = getattr(result.output, "z", None)
    if got is None or not math.isclose(got, expected, abs_tol=1e-3):
        raise TaskError(f"stats.zscore: got z = {got}, expected {expected:.4f} from the pooled data")
