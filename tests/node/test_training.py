"""A node's training data: read, numbered alike at every node, held out and partitioned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from pydantic import ValidationError

from confide._errors import AlgorithmError
from confide.node import LocalData, WorkerPool
from confide.node._config import TrainingDataConfig
from confide.node._training import load_training_data


def _table(path: Path, labels: list[str]) -> None:
    rng = np.random.default_rng(1)
    pacsv.write_csv(
        pa.table(
            {"age": rng.integers(20, 90, len(labels)), "bmi": rng.normal(27, 4, len(labels)), "y": labels}
        ),
        path,
    )


def _config(path: Path, **more: object) -> TrainingDataConfig:
    return TrainingDataConfig.model_validate(
        {"name": "t", "format": "csv", "path": str(path), "label": "y", "test_fraction": 0, **more}
    )


def test_a_table_needs_its_classes_so_every_node_numbers_them_alike(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="format csv needs classes"):
        TrainingDataConfig.model_validate({"name": "t", "format": "csv", "path": "x.csv", "label": "y"})


def test_a_node_without_some_class_still_numbers_the_others_by_the_shared_list(tmp_path: Path) -> None:
    _table(tmp_path / "a.csv", ["sick", "well", "sick", "well"])  # no "unsure" at this hospital

    split = load_training_data(_config(tmp_path / "a.csv", classes=["well", "unsure", "sick"]))

    assert split.train.classes == ("well", "unsure", "sick")
    assert split.train.y.tolist() == [2, 0, 2, 0]


def test_a_label_outside_the_declared_classes_is_refused_without_quoting_it(tmp_path: Path) -> None:
    _table(tmp_path / "a.csv", ["sick", "Mrs Smith"])

    with pytest.raises(AlgorithmError, match="1 value\\(s\\) not among its declared classes") as refused:
        LocalData([], [_config(tmp_path / "a.csv", classes=["sick", "well"])]).training_data("t")

    assert "Smith" not in str(refused.value)


def test_a_limit_draws_at_random_and_parts_of_the_held_out_split_stay_apart(tmp_path: Path) -> None:
    labels = ["a"] * 50 + ["b"] * 50  # sorted by label, as many files are
    _table(tmp_path / "a.csv", labels)
    common = {"classes": ["a", "b"], "limit": 40, "test_fraction": 0.25}

    parts = [
        load_training_data(_config(tmp_path / "a.csv", **common, partition={"parts": 2, "index": i}))
        for i in range(2)
    ]

    assert all(0 < p.train.class_counts()[1] < 20 for p in parts)  # both labels, not the first 40 rows
    assert sum(len(p.train) for p in parts) == 30 and sum(len(p.test) for p in parts) == 10
    rows = [
        {tuple(r) for r in np.asarray(getattr(p, s).x).tolist()} for p in parts for s in ("train", "test")
    ]
    assert not (rows[0] | rows[2]) & (rows[1] | rows[3])


def test_an_unknown_training_data_set_names_those_the_node_offers(tmp_path: Path) -> None:
    _table(tmp_path / "a.csv", ["a", "b"])
    data = LocalData([], [_config(tmp_path / "a.csv", classes=["a", "b"])])

    with pytest.raises(AlgorithmError, match="no training data 'x'; it offers: t"):
        data.training_data("x")


def test_preparing_reads_every_set_once_and_reports_the_unreadable_ones(tmp_path: Path) -> None:
    _table(tmp_path / "a.csv", ["a", "b", "a"])
    ok = _config(tmp_path / "a.csv", classes=["a", "b"])
    gone = _config(tmp_path / "gone.csv", classes=["a", "b"]).model_copy(update={"name": "gone"})
    data = LocalData([], [ok, gone])

    problems = data.prepare_training()

    assert problems == ["training data 'gone': a file of it is missing on this node"]
    assert data.training_data("t") is data.training_data("t")  # read by prepare, then cached


def _learning_state_once_prepared() -> tuple[bool, list[str]]:
    """Runs in a worker: wait for its preparation thread, then say what it left loaded."""
    import sys
    import threading

    from confide.node import _worker

    for thread in threading.enumerate():
        if thread.name == "prepare":
            thread.join()
    assert _worker._DATA is not None
    return "opacus" in sys.modules, sorted(_worker._DATA._training_cache)


def test_a_worker_with_training_data_loads_torch_and_the_data_before_any_step(tmp_path: Path) -> None:
    _table(tmp_path / "a.csv", ["a", "b", "a"])
    pool = WorkerPool([], 1, [_config(tmp_path / "a.csv", classes=["a", "b"])])
    try:
        future = pool._pool.submit(_learning_state_once_prepared)
        assert future.result(timeout=120) == (True, ["t"])
    finally:
        pool.close()
