"""examples/brain_volume: mean and SD per segment and age band over two hospitals, then a z-score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COLLABORATION, InProcessConsortium
from tests.examples.conftest import pooled, schema, start, text

EXAMPLE = "brain_volume"
BANDS = {"[20, 50)": (20, 50), "[50, 65)": (50, 65), "[65, 80)": (65, 80), "[80, 95)": (80, 95)}


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    running = start(tmp_path_factory.mktemp(EXAMPLE), EXAMPLE, hospitals=2, patients=60)
    try:
        yield running
    finally:
        running.close()


def _root(consortium: InProcessConsortium) -> Path:
    return consortium.local.root


def test_mean_and_sd_per_segment_and_age_band_match_the_pooled_rows(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, text(EXAMPLE, "query.sql"), schema(EXAMPLE), timeout_s=60)

    expected = []
    for segment in ("hippocampus", "amygdala", "thalamus"):
        for band, (lo, hi) in BANDS.items():
            [(n, mean, sd)] = (
                pooled(_root(consortium), "mri_volumes")
                .query(
                    "pooled",
                    "SELECT count(*), avg(volume_ml), stddev_samp(volume_ml) FROM pooled "
                    f"WHERE segment = '{segment}' AND age >= {lo} AND age < {hi}",
                )
                .fetchall()
            )
            expected.append(
                {
                    "segment": segment,
                    "age": band,
                    "n": n,
                    "mean_ml": pytest.approx(mean, abs=1e-3),
                    "sd_ml": pytest.approx(sd, abs=1e-3),
                }
            )
    assert list(rows) == expected


def test_a_patients_z_score_from_the_revealed_mean_and_sd_is_the_pooled_one(
    consortium: InProcessConsortium,
) -> None:
    volume, band = 5.6, "[65, 80)"
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, text(EXAMPLE, "query.sql"), schema(EXAMPLE), timeout_s=60)

    [row] = [r for r in rows if r["segment"] == "hippocampus" and r["age"] == band]
    z = (volume - row["mean_ml"]) / row["sd_ml"]  # type: ignore[operator]

    [(mean, sd)] = (
        pooled(_root(consortium), "mri_volumes")
        .query(
            "pooled",
            "SELECT avg(volume_ml), stddev_samp(volume_ml) FROM pooled "
            "WHERE segment = 'hippocampus' AND age >= 65 AND age < 80",
        )
        .fetchall()
    )
    assert z == pytest.approx((volume - mean) / sd, abs=1e-2)
    assert z < 0  # the example's patient: a hippocampus small for the age
