"""Weights in safe formats: safetensors bytes and flat float32 vectors, checked against the model."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from confide._errors import AlgorithmError, WireError  # noqa: E402
from confide.learning import (  # noqa: E402
    build_model,
    flatten,
    from_safetensors,
    to_safetensors,
    unflatten,
    vector_length,
)

CNN_PARAMETERS = 26_010  # conv 1->16 8x8, conv 16->32 4x4, linear 512->32, linear 32->10


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("image.cnn28")


def test_safetensors_round_trip_reproduces_the_model() -> None:
    source, target = _model(0), _model(1)
    x = torch.randn(2, 1, 28, 28)

    target.load_state_dict(from_safetensors(to_safetensors(source.state_dict()), like=target))

    torch.testing.assert_close(target(x), source(x))


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"\xff" * 8 + b"{}", (8).to_bytes(8, "little") + b"{bad json"]
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(WireError, match="not a valid safetensors file"):
        from_safetensors(data, like=_model())


def test_truncated_bytes_are_refused() -> None:
    data = to_safetensors(_model().state_dict())

    with pytest.raises(WireError):
        from_safetensors(data[:-10], like=_model())


def test_pickled_weights_are_never_unpickled() -> None:
    buffer = io.BytesIO()
    torch.save(_model().state_dict(), buffer)

    with pytest.raises(WireError):
        from_safetensors(buffer.getvalue(), like=_model())


def test_weights_of_another_architecture_are_refused() -> None:
    other = build_model("image.cnn28", {"hidden": 64})

    with pytest.raises(
        AlgorithmError, match=r"7\.weight is torch.float32 \(64, 512\), the model needs .*\(32, 512\)"
    ):
        from_safetensors(to_safetensors(other.state_dict()), like=_model())
    with pytest.raises(AlgorithmError, match=r"missing \['2\.bias', '2\.weight'\], unexpected nothing"):
        logistic = build_model("tabular.logistic", {"features": 3, "classes": 2})
        from_safetensors(
            to_safetensors(logistic.state_dict()),
            like=build_model("tabular.mlp", {"features": 3, "classes": 2}),
        )


def test_non_finite_weights_are_refused() -> None:
    state = _model().state_dict()
    state["0.bias"][0] = float("nan")

    with pytest.raises(AlgorithmError, match=r"NaN or infinite values in 0\.bias"):
        from_safetensors(to_safetensors(state), like=_model())


def test_flatten_and_unflatten_round_trip() -> None:
    model = _model()

    vector = flatten(model.state_dict())
    state = unflatten(vector, like=_model(1))

    assert vector.dtype == np.float32 and vector.shape == (vector_length(model),) == (CNN_PARAMETERS,)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(state[name], tensor)


def test_unflatten_copies_rather_than_aliasing_the_vector() -> None:
    vector = flatten(_model().state_dict())
    state = unflatten(vector, like=_model())

    vector[:] = 0

    assert float(state["0.weight"].abs().sum()) > 0


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (
            np.zeros(CNN_PARAMETERS - 1, np.float32),
            r"shape \(26009,\), the model needs a flat vector of 26010",
        ),
        (np.zeros((2, CNN_PARAMETERS), np.float32), r"shape \(2, 26010\)"),
        (np.full(CNN_PARAMETERS, np.inf, np.float32), "NaN or infinite"),
    ],
)
def test_unflatten_refuses_wrong_vectors(vector: np.ndarray, message: str) -> None:
    with pytest.raises(AlgorithmError, match=message):
        unflatten(vector, like=_model())


def test_flatten_refuses_integer_tensors() -> None:
    with pytest.raises(AlgorithmError, match=r"cannot flatten steps: it is torch\.int64"):
        flatten({"w": torch.zeros(2), "steps": torch.tensor(3)})
