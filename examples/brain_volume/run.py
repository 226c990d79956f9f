"""Run the brain-volume example on a local consortium of two hospitals and print the answers.

Starts a hub and two hospital nodes as local processes (as ``confide demo`` does), each
node holding its generated ``mri_volumes``; runs ``query.sql`` by secure aggregation; then
computes one patient's z-scores here, at the researcher, from the revealed means and
standard deviations of the patient's age band. The hospitals never see the patient; the
researcher never sees the hospitals' rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from generate import write

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium

HERE = Path(__file__).parent
# The patient: 71 years old, with a hippocampus small for that age.
PATIENT_AGE_BAND = "[65, 80)"
PATIENT_ML = {"hippocampus": 5.6, "amygdala": 2.8, "thalamus": 13.0}


def zscores(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The patient's z-score per segment against the patient's age band: (x - mean) / sd."""
    return {
        row["segment"]: (PATIENT_ML[row["segment"]] - row["mean_ml"]) / row["sd_ml"]
        for row in rows
        if row["age"] == PATIENT_AGE_BAND
    }


def main() -> None:
    """Start the consortium, run the query, print the table and the patient's z-scores."""
    schema = yaml.safe_load((HERE / "schema.yaml").read_text())
    sql = (HERE / "query.sql").read_text()
    with (
        tempfile.TemporaryDirectory(prefix="confide-brain-") as tmp,
        LocalConsortium(Path(tmp), hospitals=2, tables=write) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        result = client.run_query(COLLABORATION, sql, schema, timeout_s=60)
    print(f"{'segment':<12} {'age':<9} {'n':>4} {'mean ml':>8} {'sd ml':>7}")
    for row in result:
        mean, sd = row["mean_ml"], row["sd_ml"]
        print(f"{row['segment']:<12} {row['age']:<9} {row['n']:>4.0f} {mean:>8.3f} {sd:>7.3f}")
    print(f"\npatient, age band {PATIENT_AGE_BAND}:")
    for segment, z in zscores(result).items():
        print(f"  {segment:<12} {PATIENT_ML[segment]:>5.1f} ml  z = {z:+.2f}")


if __name__ == "__main__":
    main()
