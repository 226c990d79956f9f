"""The brain-volume query in the Conclave-style DSL: the same plan as ``query.sql``.

``python query.py`` prints the plan: what runs locally at each hospital, what is summed
securely, and what the researcher computes.
"""

from __future__ import annotations

from confide.query import Query, aggregate_many, collect, compile_plan, create, defCol

HOSPITALS = ["node-a", "node-b"]


def build() -> Query:
    """Mean and standard deviation of each segment's volume per age band, for the researcher."""
    volumes = create(
        "mri_volumes",
        [
            defCol("patient_id", "STRING"),
            defCol("age", "INTEGER", bins=[20, 50, 65, 80, 95]),
            defCol("sex", "STRING", categories=["F", "M"]),
            defCol("segment", "STRING", categories=["hippocampus", "amygdala", "thalamus"]),
            defCol("volume_ml", "FLOAT", bounds=[0, 40]),
        ],
        at=HOSPITALS,
    )
    stats = aggregate_many(
        volumes,
        "stats",
        ["segment", "age"],
        [("count", None, "n"), ("mean", "volume_ml", "mean_ml"), ("std", "volume_ml", "sd_ml")],
    )
    return collect(stats, to="researcher")


if __name__ == "__main__":
    query = build()
    print(compile_plan(query.relation, query.schema).explain())
