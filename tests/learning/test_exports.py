"""The public names of confide.learning, and that data-only use never imports torch."""

from __future__ import annotations

import subprocess
import sys

import confide.learning

PINNED = {
    "FASHION_MNIST_MEAN_STD", "MNIST_MEAN_STD", "MODEL_ENTRY_POINT_GROUP",
    "Accounting", "Activation", "CNNConfig", "Dataset", "EvaluationSums",
    "LocalTraining", "LocalUpdate", "LogisticConfig", "MLPConfig", "Model", "ModelSpec", "NoisySteps",
    "TrainingSplit", "available_models", "build_model", "epsilon_spent", "evaluate",
    "FixedTransform", "ScatterConfig", "Scattering2D",
    "flatten",
    "from_safetensors", "get_model_spec", "load_idx", "load_mnist_5k", "load_table", "noise_multiplier_for",
    "normalise", "partition_dirichlet", "partition_iid", "read_idx", "to_safetensors", "train_locally",
    "train_test_split", "unflatten", "vector_length",
}  # fmt: skip


def test_exported_names_are_pinned() -> None:
    assert set(confide.learning.__all__) == PINNED
    assert set(confide.learning._MODULE_OF) == PINNED


def test_data_loading_does_not_import_torch() -> None:
    code = (
        "import sys, confide, confide.learning as L; L.Dataset; L.partition_dirichlet; L.read_idx; "
        "assert 'torch' not in sys.modules and 'opacus' not in sys.modules, 'torch imported'"
    )

    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        confide.learning.Trainer  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'Trainer'" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
