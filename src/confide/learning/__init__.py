"""Federated learning at the node: allow-listed models, safe weights, data, DP-SGD, epsilon maths.

General layout, in dependency order (each module imports only those above it)::

    _data        Dataset; IDX / CSV / Parquet / MNIST-5k loaders; normalise; IID and
                 Dirichlet partitions                                        (numpy, pyarrow)
    _frontend    FixedTransform: a parameter-free first layer run once over a data set
                 and cached, not in every step                                       (torch)
    _scattering  Scattering2D: Morlet wavelet scattering, a fixed image front end
    _models      the allow-list of architectures (image.cnn28, image.scatter28,
                 tabular.mlp, tabular.logistic; more by ``confide.models`` entry points)
    _weights     state_dict <-> safetensors bytes and flat float32 vectors   (never pickle)
    _privacy     NoisySteps histories -> epsilon; noise multiplier for a target  (opacus)
    _dpsgd       one round of local training: DP-SGD with Opacus, or plain SGD
    _evaluate    (correct, total, loss_sum) for secure summing

The node keeps its DP-SGD history in its own privacy file (``confide.node``) and asks
``_privacy`` only for the epsilon maths.

torch and opacus come with the ``fl`` extra and are imported only by this package, and
only when a name that needs them is first used: ``from confide.learning import Dataset``
loads numpy and pyarrow, nothing more.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confide.learning._data import (
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
        read_idx,
        train_test_split,
    )
    from confide.learning._dpsgd import LocalTraining, LocalUpdate, train_locally
    from confide.learning._evaluate import EvaluationSums, evaluate
    from confide.learning._frontend import FixedTransform
    from confide.learning._models import (
        MODEL_ENTRY_POINT_GROUP,
        Activation,
        CNNConfig,
        LogisticConfig,
        MLPConfig,
        Model,
        ModelSpec,
        ScatterConfig,
        available_models,
        build_model,
        get_model_spec,
    )
    from confide.learning._privacy import Accounting, NoisySteps, epsilon_spent, noise_multiplier_for
    from confide.learning._scattering import Scattering2D
    from confide.learning._weights import flatten, from_safetensors, to_safetensors, unflatten, vector_length

_HOME = {
    "_data": (
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
    ),
    "_dpsgd": ("LocalTraining", "LocalUpdate", "train_locally"),
    "_evaluate": ("EvaluationSums", "evaluate"),
    "_frontend": ("FixedTransform",),
    "_models": (
        "MODEL_ENTRY_POINT_GROUP",
        "Model",
        "Activation",
        "CNNConfig",
        "LogisticConfig",
        "MLPConfig",
        "ModelSpec",
        "ScatterConfig",
        "available_models",
        "build_model",
        "get_model_spec",
    ),
    "_scattering": ("Scattering2D",),
    "_privacy": ("Accounting", "NoisySteps", "epsilon_spent", "noise_multiplier_for"),
    "_weights": ("flatten", "from_safetensors", "to_safetensors", "unflatten", "vector_length"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "FASHION_MNIST_MEAN_STD",
    "MNIST_MEAN_STD",
    "MODEL_ENTRY_POINT_GROUP",
    "Accounting",
    "Activation",
    "CNNConfig",
    "Dataset",
    "EvaluationSums",
    "FixedTransform",
    "LocalTraining",
    "LocalUpdate",
    "LogisticConfig",
    "MLPConfig",
    "Model",
    "ModelSpec",
    "NoisySteps",
    "ScatterConfig",
    "Scattering2D",
    "TrainingSplit",
    "available_models",
    "build_model",
    "epsilon_spent",
    "evaluate",
    "flatten",
    "from_safetensors",
    "get_model_spec",
    "load_idx",
    "load_mnist_5k",
    "load_table",
    "noise_multiplier_for",
    "normalise",
    "partition_dirichlet",
    "partition_iid",
    "read_idx",
    "to_safetensors",
    "train_locally",
    "train_test_split",
    "unflatten",
    "vector_length",
]


def __getattr__(name: str) -> object:
    # Import the implementing module on first use, so that data-only users never load torch.
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'confide.learning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"confide.learning.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
