"""Synthetic payroll for the gender-pay-gap example, one table per employer.

Each employer holds ``employees``: one row per employee with gender, job category, years of
experience and yearly compensation (salary and bonus, in euros). Pay depends on the job,
grows with experience, differs by employer, and women are paid some 6-10 % less than men
in the same job; fewer women are managers, so the gap over all jobs is wider than within
each. Seeded: an employer always gets the same rows. Employers A and B write CSV, C Parquet.

``python generate.py OUT`` writes every employer's file under ``OUT/node-a`` ... ``OUT/node-c``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EMPLOYERS = ("node-a", "node-b", "node-c")
EMPLOYEES = 400
COLUMNS = {"employee_id": "str", "gender": "str", "job": "str", "years": "int", "compensation": "float"}
# Per job: median pay at 0 years, share of women, and women's pay relative to men's.
JOBS = {
    "engineer": (52_000, 0.25, 0.94),
    "analyst": (45_000, 0.50, 0.93),
    "sales": (38_000, 0.55, 0.90),
    "manager": (68_000, 0.30, 0.91),
}


def employees(index: int, count: int = EMPLOYEES) -> pa.Table:
    """Employer number ``index``'s ``employees``: ``count`` rows."""
    rng = np.random.default_rng(20260501 + index)
    names = list(JOBS)
    job = rng.choice(names, count, p=[0.35, 0.25, 0.25, 0.15])
    base, women, ratio = (np.array([JOBS[j][k] for j in job]) for k in range(3))
    female = rng.random(count) < women
    years = rng.integers(0, 35, count)
    pay = base * (1.025**years) * np.where(female, ratio, 1.0) * (1.0 + 0.05 * (index - 1))
    pay *= rng.lognormal(0.0, 0.12, count)
    return pa.table(
        {
            "employee_id": [f"{EMPLOYERS[index]}-{i:05d}" for i in range(count)],
            "gender": np.where(female, "F", "M").tolist(),
            "job": job.tolist(),
            "years": pa.array(years, pa.int64()),
            "compensation": np.round(pay, 2),
        }
    )


def write(node_id: str, index: int, folder: Path, count: int = EMPLOYEES) -> list[dict[str, Any]]:
    """Write employer ``index``'s table into ``folder``; return its ``data:`` entries for ``node.yaml``."""
    path = folder / ("employees.parquet" if index == 2 else "employees.csv")
    table = employees(index, count)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return [{"name": "employees", "format": path.suffix[1:], "path": path.name, "columns": COLUMNS}]


def main(out: Path) -> None:
    """Write every employer's data under ``out``."""
    for index, node_id in enumerate(EMPLOYERS):
        folder = out / node_id
        folder.mkdir(parents=True, exist_ok=True)
        for entry in write(node_id, index, folder):
            print(folder / entry["path"])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
