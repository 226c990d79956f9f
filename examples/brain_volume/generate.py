"""Synthetic MRI brain-segment volumes for the brain-volume example, one table per hospital.

Each hospital holds ``mri_volumes``: one row per patient and brain segment (hippocampus,
amygdala, thalamus) with the patient's age and sex and the segment's volume in millilitres,
both hemispheres together, as a FreeSurfer-style segmentation reports it. Volumes follow
published orders of magnitude and shrink with age after 40; women's are some 7 % smaller;
each hospital's scanner reads slightly differently. Seeded: a hospital always gets the same
rows. Hospital A writes CSV, hospital B Parquet.

``python generate.py OUT`` writes both hospitals' files under ``OUT/node-a`` and ``OUT/node-b``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HOSPITALS = ("node-a", "node-b")
PATIENTS = 300
COLUMNS = {"patient_id": "str", "age": "int", "sex": "str", "segment": "str", "volume_ml": "float"}
# Per segment: mean volume (ml) of a man aged 40, and the fraction lost per year after 40.
SEGMENTS = {"hippocampus": (8.0, 0.0045), "amygdala": (3.3, 0.0035), "thalamus": (15.0, 0.0040)}


def volumes(index: int, patients: int = PATIENTS) -> pa.Table:
    """Hospital number ``index``'s ``mri_volumes``: ``patients`` patients, one row per segment."""
    rng = np.random.default_rng(20260422 + index)
    age = rng.integers(25, 90, patients)
    sex = rng.choice(["F", "M"], patients)
    scanner = 1.0 + 0.015 * index
    ids = [f"{HOSPITALS[index]}-{i:04d}" for i in range(patients)]
    parts = []
    for segment, (at_40, loss) in SEGMENTS.items():
        mean = at_40 * (1 - loss * np.clip(age - 40, 0, None)) * np.where(sex == "F", 0.93, 1.0) * scanner
        volume = mean * rng.normal(1.0, 0.08, patients)
        parts.append(
            pa.table(
                {
                    "patient_id": ids,
                    "age": pa.array(age, pa.int64()),
                    "sex": sex.tolist(),
                    "segment": [segment] * patients,
                    "volume_ml": np.round(volume, 3),
                }
            )
        )
    return pa.concat_tables(parts)


def write(node_id: str, index: int, folder: Path, patients: int = PATIENTS) -> list[dict[str, Any]]:
    """Write hospital ``index``'s table into ``folder``; return its ``data:`` entries for ``node.yaml``."""
    path = folder / ("mri_volumes.csv" if index == 0 else "mri_volumes.parquet")
    table = volumes(index, patients)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return [{"name": "mri_volumes", "format": path.suffix[1:], "path": path.name, "columns": COLUMNS}]


def main(out: Path) -> None:
    """Write every hospital's data under ``out``."""
    for index, node_id in enumerate(HOSPITALS):
        folder = out / node_id
        folder.mkdir(parents=True, exist_ok=True)
        for entry in write(node_id, index, folder):
            print(folder / entry["path"])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
