"""The model registry: allow-listed architectures built from validated configs, and entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from confide._errors import AlgorithmError  # noqa: E402
from confide.learning import (  # noqa: E402
    MODEL_ENTRY_POINT_GROUP,
    LogisticConfig,
    ModelSpec,
    _models,
    available_models,
    build_model,
    get_model_spec,
)

BUILT_IN = ["image.cnn28", "image.scatter28", "tabular.logistic", "tabular.mlp"]


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    _models._registered.cache_clear()
    yield
    _models._registered.cache_clear()


def test_built_in_architectures_are_registered() -> None:
    assert set(BUILT_IN) <= set(available_models())


def test_cnn28_maps_images_to_class_logits() -> None:
    model = build_model("image.cnn28")

    out = model(torch.zeros(3, 1, 28, 28))

    assert out.shape == (3, 10)
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_cnn28_options_relu_and_group_norm() -> None:
    model = build_model("image.cnn28", {"activation": "relu", "groups": 4, "classes": 5, "channels": [8, 16]})

    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 2
    assert any(isinstance(m, nn.ReLU) for m in model.modules())


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("image.cnn28", {}),
        ("image.cnn28", {"groups": 8}),
        ("image.scatter28", {}),
        ("image.scatter28", {"hidden": 32, "groups": 0}),
        ("tabular.mlp", {"features": 7, "classes": 2}),
        ("tabular.logistic", {"features": 7, "classes": 3}),
    ],
)
def test_every_built_in_model_is_valid_for_opacus(name: str, config: dict[str, object]) -> None:
    validators = pytest.importorskip("opacus.validators")

    errors = validators.ModuleValidator.validate(build_model(name, config), strict=False)

    assert errors == []


def test_scatter28_is_a_fixed_scattering_before_a_linear_classifier() -> None:
    model = build_model("image.scatter28", {"classes": 5})

    out = model(torch.rand(3, 1, 28, 28))

    assert out.shape == (3, 5)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    # Only GroupNorm and the linear layer learn; the wavelet filters stay out of the state dict.
    assert set(model.state_dict()) == trainable == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert model[3].in_features == 81 * 7 * 7


def test_tabular_models_take_feature_vectors() -> None:
    mlp = build_model("tabular.mlp", {"features": 7, "classes": 2, "hidden": [16, 8]})
    logistic = build_model("tabular.logistic", {"features": 7, "classes": 3})

    assert mlp(torch.zeros(4, 7)).shape == (4, 2)
    assert logistic(torch.zeros(4, 7)).shape == (4, 3)
    assert sum(isinstance(m, nn.Linear) for m in logistic.modules()) == 1


def test_unknown_model_is_named_with_the_registered_ones() -> None:
    with pytest.raises(AlgorithmError, match=r"unknown model 'resnet50'; registered models: .*image\.cnn28"):
        build_model("resnet50")


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("tabular.mlp", {"features": 4, "classes": 2, "code": "import os"}, "code: Extra inputs"),
        ("tabular.mlp", {"classes": 2}, "features: Field required"),
        ("image.cnn28", {"activation": "sigmoid"}, "activation: Input should be 'tanh' or 'relu'"),
        ("image.cnn28", {"groups": 3}, "groups 3 must divide both channel counts"),
        ("image.cnn28", {"channels": [16, 0]}, "channels must lie between 1 and 512"),
        ("image.scatter28", {"groups": 8}, "groups 8 must divide the 81 scattering maps"),
    ],
)
def test_invalid_configs_are_refused_with_the_field(
    name: str, config: dict[str, object], message: str
) -> None:
    with pytest.raises(AlgorithmError, match=f"invalid configuration for model '{name}': .*{message}"):
        build_model(name, config)


def _entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=MODEL_ENTRY_POINT_GROUP)


TINY = ModelSpec("test.tiny", LogisticConfig, lambda cfg: nn.Linear(cfg.features, cfg.classes))
WRONG_NAME = ModelSpec("test.other", LogisticConfig, lambda cfg: nn.Linear(cfg.features, cfg.classes))


def test_entry_points_add_models(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    found = [_entry_point("test.tiny", f"{__name__}:TINY")]
    monkeypatch.setattr(
        _models, "entry_points", lambda group: found if group == MODEL_ENTRY_POINT_GROUP else []
    )

    model = build_model("test.tiny", {"features": 2, "classes": 2})

    assert "test.tiny" in available_models() and get_model_spec("test.tiny") is TINY
    assert isinstance(model, nn.Linear)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("test.tiny", f"{__name__}:WRONG_NAME", "is not a ModelSpec named 'test.tiny'"),
        ("test.tiny", f"{__name__}:BUILT_IN", "is not a ModelSpec"),
        ("image.cnn28", f"{__name__}:TINY", "is not a ModelSpec named 'image.cnn28'"),
    ],
)
def test_bad_entry_points_are_refused(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None, name: str, value: str, message: str
) -> None:
    monkeypatch.setattr(_models, "entry_points", lambda group: [_entry_point(name, value)])

    with pytest.raises(AlgorithmError, match=message):
        available_models()


def test_entry_points_cannot_replace_a_built_in(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    spec = ModelSpec("image.cnn28", LogisticConfig, lambda cfg: nn.Linear(cfg.features, cfg.classes))
    monkeypatch.setattr(_models, "entry_points", lambda group: [_FakeEntryPoint("image.cnn28", spec)])

    with pytest.raises(AlgorithmError, match="reuses the name of a registered model"):
        available_models()


class _FakeEntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name, self.value, self._target = name, "fake:spec", target

    def load(self) -> object:
        return self._target


def test_a_seed_fixes_the_initial_weights_without_touching_the_global_state() -> None:
    before = torch.random.get_rng_state()

    a = build_model("image.cnn28", seed=7)
    b = build_model("image.cnn28", seed=7)
    c = build_model("image.cnn28", seed=8)

    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])
