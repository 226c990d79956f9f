"""The allow-list of model architectures a node will train, found by name.

A researcher never sends code: a job names a registered architecture and gives a small
configuration, which the architecture's pydantic model validates (unknown fields are
refused) before anything is built. The node then builds the ``torch.nn.Module`` itself.

Built in:

- ``image.cnn28``: a small CNN for 1x28x28 images (MNIST, Fashion-MNIST): two strided
  convolutions, each followed by a stride-1 max-pool, then two linear layers; tanh
  activations by default, since bounded activations keep activations and gradients small
  under clipping and noise (Papernot et al. 2021, "Tempered sigmoid activations for deep
  learning with differential privacy"). It is the architecture of that paper and of Tramer &
  Boneh 2021's end-to-end CNN. Normalisation, when asked for, is GroupNorm: BatchNorm mixes
  samples within a batch, which breaks per-sample gradients and so DP-SGD.
- ``image.scatter28``: a fixed scattering network (Morlet wavelets, two orders, 81 maps of
  7x7; see ``_scattering``) followed by GroupNorm and a linear classifier, optionally with
  one hidden layer. Tramer & Boneh 2021's "ScatterNet + linear" model, the most accurate
  under DP-SGD on MNIST-like images at small epsilon: the features cost no privacy, and the
  few trainable weights suffer less from the noise. The scattering runs once over a node's
  data, not in every step (:class:`~confide.learning._frontend.FixedTransform`).
- ``tabular.mlp``: a multilayer perceptron over numeric features.
- ``tabular.logistic``: multinomial logistic regression (one linear layer).

Other packages add architectures under the entry-point group ``confide.models``; each entry
point names a :class:`ModelSpec` whose ``name`` equals the entry point's name. A node still
trains only what its policy allows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from confide._errors import AlgorithmError
from confide.learning._scattering import Scattering2D

__all__ = [
    "MODEL_ENTRY_POINT_GROUP",
    "Activation",
    "CNNConfig",
    "LogisticConfig",
    "MLPConfig",
    "Model",
    "ModelSpec",
    "ScatterConfig",
    "available_models",
    "build_model",
    "get_model_spec",
]

Model = nn.Module
"""What every allow-listed architecture builds: a ``torch.nn.Module``."""

MODEL_ENTRY_POINT_GROUP = "confide.models"

C = TypeVar("C", bound=BaseModel)


class Activation(enum.StrEnum):
    """Hidden-layer activation."""

    TANH = "tanh"
    RELU = "relu"

    def layer(self) -> nn.Module:
        return nn.Tanh() if self is Activation.TANH else nn.ReLU()


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CNNConfig(_Config):
    """Configuration of ``image.cnn28``.

    Parameters
    ----------
    channels : tuple of two ints
        Output channels of the two convolutions.
    hidden : int
        Width of the hidden linear layer.
    classes : int
        Number of output classes.
    activation : Activation
        ``tanh`` (default, better under DP-SGD) or ``relu``.
    groups : int
        GroupNorm groups after each convolution; 0 for none. Must divide both channel counts.
    """

    channels: tuple[int, int] = (16, 32)
    hidden: int = Field(default=32, ge=1, le=4096)
    classes: int = Field(default=10, ge=2, le=10_000)
    activation: Activation = Activation.TANH
    groups: int = Field(default=0, ge=0, le=512)

    @model_validator(mode="after")
    def _check(self) -> CNNConfig:
        if not all(1 <= c <= 512 for c in self.channels):
            raise ValueError(f"channels must lie between 1 and 512, got {self.channels}")
        if self.groups and any(c % self.groups for c in self.channels):
            raise ValueError(f"groups {self.groups} must divide both channel counts {self.channels}")
        return self


class ScatterConfig(_Config):
    """Configuration of ``image.scatter28``.

    Parameters
    ----------
    classes : int
        Number of output classes.
    groups : int
        GroupNorm groups over the 81 scattering maps (default 27, as Tramer & Boneh); 0 for
        none. Must divide 81.
    hidden : int
        Width of one hidden layer before the classifier; 0 (default) for a linear classifier.
    activation : Activation
        Of the hidden layer, if any.
    """

    classes: int = Field(default=10, ge=2, le=10_000)
    groups: int = Field(default=27, ge=0, le=81)
    hidden: int = Field(default=0, ge=0, le=4096)
    activation: Activation = Activation.TANH

    @model_validator(mode="after")
    def _check(self) -> ScatterConfig:
        if self.groups and 81 % self.groups:
            raise ValueError(f"groups {self.groups} must divide the 81 scattering maps (1, 3, 9, 27 or 81)")
        return self


class MLPConfig(_Config):
    """Configuration of ``tabular.mlp``: ``features`` inputs, ``hidden`` layer widths, ``classes`` outputs."""

    features: int = Field(ge=1, le=1_000_000)
    classes: int = Field(ge=2, le=10_000)
    hidden: tuple[int, ...] = Field(default=(64,), min_length=1, max_length=8)
    activation: Activation = Activation.TANH

    @model_validator(mode="after")
    def _check(self) -> MLPConfig:
        if not all(1 <= h <= 65_536 for h in self.hidden):
            raise ValueError(f"hidden widths must lie between 1 and 65536, got {self.hidden}")
        return self


class LogisticConfig(_Config):
    """Configuration of ``tabular.logistic``: ``features`` inputs, ``classes`` outputs."""

    features: int = Field(ge=1, le=1_000_000)
    classes: int = Field(ge=2, le=10_000)


@dataclass(frozen=True)
class ModelSpec(Generic[C]):
    """A registered architecture: its name, its configuration model and its builder.

    Parameters
    ----------
    name : str
        The registry name, e.g. ``"image.cnn28"``.
    config : type of pydantic.BaseModel
        Validates the researcher's configuration; should forbid extra fields.
    build : callable
        Builds a fresh, randomly initialised module from a validated configuration.
    """

    name: str
    config: type[C]
    build: Callable[[C], nn.Module]

    def parse(self, raw: Mapping[str, object]) -> C:
        """Validate ``raw`` into this architecture's configuration, or raise :class:`AlgorithmError`."""
        try:
            return self.config.model_validate(dict(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise AlgorithmError(
                f"invalid configuration for model {self.name!r}: {where}: {err['msg']}"
            ) from None


def _cnn28(cfg: CNNConfig) -> nn.Module:
    c1, c2 = cfg.channels

    def block(conv: nn.Conv2d, channels: int) -> list[nn.Module]:
        norm: list[nn.Module] = [nn.GroupNorm(cfg.groups, channels)] if cfg.groups else []
        return [conv, *norm, cfg.activation.layer(), nn.MaxPool2d(2, 1)]

    # 28x28 -> conv 8x8 /2 pad 3 -> 14x14 -> pool -> 13x13 -> conv 4x4 /2 -> 5x5 -> pool -> 4x4
    return nn.Sequential(
        *block(nn.Conv2d(1, c1, 8, stride=2, padding=3), c1),
        *block(nn.Conv2d(c1, c2, 4, stride=2), c2),
        nn.Flatten(),
        nn.Linear(c2 * 4 * 4, cfg.hidden),
        cfg.activation.layer(),
        nn.Linear(cfg.hidden, cfg.classes),
    )


def _scatter28(cfg: ScatterConfig) -> nn.Module:
    scattering = Scattering2D((28, 28), J=2, L=8)  # 81 maps of 7x7
    width = scattering.channels * scattering.out_shape[0] * scattering.out_shape[1]
    norm: list[nn.Module] = [nn.GroupNorm(cfg.groups, scattering.channels)] if cfg.groups else []
    head: list[nn.Module] = [nn.Linear(width, cfg.hidden), cfg.activation.layer()] if cfg.hidden else []
    return nn.Sequential(scattering, *norm, nn.Flatten(), *head, nn.Linear(cfg.hidden or width, cfg.classes))


def _mlp(cfg: MLPConfig) -> nn.Module:
    layers: list[nn.Module] = []
    width = cfg.features
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), cfg.activation.layer()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, cfg.classes))


def _logistic(cfg: LogisticConfig) -> nn.Module:
    # Softmax lives in the loss (cross-entropy over logits), as for the other models.
    return nn.Sequential(nn.Linear(cfg.features, cfg.classes))


_BUILT_IN: tuple[ModelSpec[Any], ...] = (
    ModelSpec("image.cnn28", CNNConfig, _cnn28),
    ModelSpec("image.scatter28", ScatterConfig, _scatter28),
    ModelSpec("tabular.mlp", MLPConfig, _mlp),
    ModelSpec("tabular.logistic", LogisticConfig, _logistic),
)


@cache
def _registered() -> dict[str, ModelSpec[Any]]:
    found: dict[str, ModelSpec[Any]] = {spec.name: spec for spec in _BUILT_IN}
    for ep in entry_points(group=MODEL_ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ModelSpec) or spec.name != ep.name:
            raise AlgorithmError(f"entry point {ep.name!r} ({ep.value}) is not a ModelSpec named {ep.name!r}")
        if ep.name in found:
            raise AlgorithmError(
                f"entry point {ep.name!r} ({ep.value}) reuses the name of a registered model"
            )
        found[ep.name] = spec
    return found


def available_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_registered())


def get_model_spec(name: str) -> ModelSpec[Any]:
    """The registered architecture ``name``; :class:`AlgorithmError` lists the known ones."""
    try:
        return _registered()[name]
    except KeyError:
        known = ", ".join(available_models())
        raise AlgorithmError(f"unknown model {name!r}; registered models: {known}") from None


def build_model(
    name: str, config: Mapping[str, object] | None = None, *, seed: int | None = None
) -> nn.Module:
    """Build the registered architecture ``name`` from a researcher's ``config``.

    Parameters
    ----------
    name : str
        A registered architecture, see :func:`available_models`.
    config : mapping, optional
        Its configuration; validated by the architecture's model (unknown keys refused).
    seed : int, optional
        Fixes the initial weights (a public starting point), without touching torch's
        global random state; ``None`` draws them from that state.

    Returns
    -------
    torch.nn.Module
        A freshly initialised module.

    Raises
    ------
    AlgorithmError
        Unknown architecture (the message lists the registered ones) or invalid configuration.
    """
    spec = get_model_spec(name)
    parsed = spec.parse(config or {})
    if seed is None:
        return spec.build(parsed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return spec.build(parsed)
