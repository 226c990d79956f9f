"""Deterministic synthetic patients for the demo and tests: age, sex and brain-segment volumes.

Volumes follow published orders of magnitude (hippocampus ~3.5 ml per side shrinking
with age, lateral ventricles growing with age); each hospital draws from a slightly
different population so per-node results differ. The generator is seeded: the same
hospital index always gives the same rows. This is sample data, not randomness for
keys or masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["PATIENT_COLUMNS", "patients", "write_patients"]

PATIENT_COLUMNS = {
    "patient_id": "str",
    "age": "int",
    "sex": "str",
    "hippocampus_ml": "float",
    "ventricles_ml": "float",
    "brain_ml": "float",
}


def patients(hospital: int, rows: int = 400) -> pa.Table:
    """The synthetic patient table of hospital number ``hospital``."""
    rng = np.random.Generator(np.random.PCG64(20261122 + hospital))
    age = rng.integers(20 + 5 * hospital, 90, rows)
    female = rng.random(rows) < 0.52
    scale = np.where(female, 0.92, 1.0)
    hippocampus = (8.2 - 0.022 * (age - 20) + rng.normal(0, 0.45, rows)) * scale
    ventricles = (12.0 + 0.45 * (age - 20) + rng.gamma(2.0, 3.0, rows)) * scale
    brain = (1250 - 2.1 * (age - 20) + rng.normal(0, 60, rows)) * scale
    return pa.table(
        {
            "patient_id": [f"H{hospital}-{i:05d}" for i in range(rows)],
            "age": pa.array(age, pa.int64()),
            "sex": np.where(female, "F", "M").tolist(),
            "hippocampus_ml": np.round(hippocampus, 3),
            "ventricles_ml": np.round(ventricles, 2),
            "brain_ml": np.round(brain, 1),
        }
    )


def write_patients(path: Path, hospital: int, rows: int = 400) -> None:
    """Write hospital ``hospital``'s patients as CSV or Parquet, by the file's suffix."""
    table = patients(hospital, rows)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
