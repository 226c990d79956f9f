"""A node's training data sets (``training_data`` in node.yaml), loaded for ``fl.train``.

Each data set is read once per worker process (again when a file changes), normalised
with public constants, split into a training part and a held-out part that never changes
(``split_seed``), and, in simulations where nodes share one file, cut to this node's part.
Only numpy and pyarrow are needed here; torch is imported by the steps that train.
"""

from __future__ import annotations

import os

import numpy as np

from confide._errors import AlgorithmError, ConfigError
from confide.learning import (
    FASHION_MNIST_MEAN_STD,
    MNIST_MEAN_STD,
    Dataset,
    TrainingSplit,
    load_idx,
    load_mnist_5k,
    load_table,
    normalise,
    partition_dirichlet,
    partition_iid,
    train_test_split,
)
from confide.node._config import TrainingDataConfig, TrainingFormat

__all__ = ["TrainingSplit", "load_training_data"]

_NORMALISE = {"mnist": MNIST_MEAN_STD, "fashion-mnist": FASHION_MNIST_MEAN_STD}


def files_of(config: TrainingDataConfig) -> list[str]:
    """The files a data set is read from (for change detection)."""
    return [str(p) for p in (config.images, config.labels, config.path) if p is not None]


def stamp(config: TrainingDataConfig) -> tuple[float, ...]:
    """The files' modification times; :class:`AlgorithmError` if one is missing."""
    try:
        return tuple(os.stat(f).st_mtime for f in files_of(config))
    except OSError:
        raise AlgorithmError(f"training data {config.name!r}: a file of it is missing on this node") from None


def load_training_data(config: TrainingDataConfig) -> TrainingSplit:
    """Read, normalise, partition and split one data set; errors name it, never its values."""
    try:
        data = _read(config)
    except ConfigError as exc:
        raise AlgorithmError(f"training data {config.name!r} cannot be read: {exc}") from None
    if config.limit is not None and config.limit < len(data):
        # A random subset (by split_seed), not the first rows: files are often sorted by label.
        order = np.random.default_rng(config.split_seed).permutation(len(data))
        data = data.subset(np.sort(order[: config.limit]))
    if config.normalise != "none":
        mean, std = _NORMALISE[config.normalise] if isinstance(config.normalise, str) else config.normalise
        data = normalise(data, mean, std)
    if config.test_fraction > 0:
        train, test = train_test_split(data, config.test_fraction, config.split_seed)
    else:
        train, test = data, data.head(0)
    part = config.partition
    if part is not None:
        # Both splits are dealt alike, so each node's held-out part stays disjoint from every
        # node's training part.
        if part.alpha is None:
            train = partition_iid(train, part.parts, part.seed)[part.index]
            test = partition_iid(test, part.parts, part.seed)[part.index] if len(test) else test
        else:
            train = partition_dirichlet(train, part.parts, part.alpha, part.seed)[part.index]
            test = partition_iid(test, part.parts, part.seed)[part.index] if len(test) else test
    return TrainingSplit(train, test)


def _in_shared_order(data: Dataset, config: TrainingDataConfig) -> Dataset:
    """Number the labels by ``classes`` (shared by every node), not by what this file holds."""
    shared = list(config.classes or ())
    unknown = [c for c in data.classes if c not in shared]
    if unknown:
        raise ConfigError(
            f"label column {config.label!r} has {len(unknown)} value(s) not among its declared classes; "
            "add them to classes in node.yaml (the node's log does not show them either)"
        )
    index = np.asarray([shared.index(c) for c in data.classes], dtype=np.int64)
    return Dataset(data.x, index[data.y], tuple(shared))


def _read(config: TrainingDataConfig) -> Dataset:
    if config.format is TrainingFormat.MNIST_5K:
        return load_mnist_5k()
    if config.images is not None and config.labels is not None:
        return load_idx(config.images, config.labels, config.classes)
    if config.path is not None and config.label is not None:
        return _in_shared_order(load_table(config.path, config.label, config.features), config)
    raise ConfigError(f"format {config.format.value} lacks its files")  # pragma: no cover - validated
