"""Local training at a node: DP-SGD with Opacus, or plain SGD when no privacy is asked for.

One call of :func:`train_locally` is one round of a node's part in FedAvg: starting from
the model as given (the global weights loaded into it), take ``steps`` steps and return the
new weights, the mean training loss, and the :class:`NoisySteps` to charge the node's
accountant with.

DP-SGD (Abadi et al. 2016), as Opacus implements it:

1. each step draws a batch by **Poisson sampling**: every sample joins independently with
   probability q = batch_size / n (the amplification-by-subsampling analysis the
   accountants use assumes exactly this; a shuffled fixed-size batch would not match it);
2. Opacus' ``GradSampleModule`` computes **per-sample gradients** (backward hooks);
3. ``DPOptimizer`` **clips** each to L2 norm ``clip_norm``, sums them, adds Gaussian noise
   of standard deviation ``noise_multiplier * clip_norm`` and divides by the *expected*
   batch size q n (dividing by the drawn size would leak it);
4. the wrapped optimizer (SGD, optional momentum) takes the step.

An empty Poisson batch still takes a step (noise only), as the analysis assumes. Batches are
drawn by indexing tensors held in memory rather than through a ``DataLoader``: on a CPU
with small images the per-sample collation of a loader costs as much as the model.

Randomness: batches and noise come from one ``torch.Generator``. With ``seed=None`` it is
seeded from the operating system's CSPRNG; a fixed seed is for tests and simulations only
(whoever knows the seed can subtract the noise). Neither choice makes the Mersenne-Twister
noise robust to floating-point attacks (Mironov 2012): ``LocalTraining.secure_noise`` (on
unless a test turns it off) uses Opacus' mitigation.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from confide.learning._data import Dataset
from confide.learning._frontend import split_front, transformed
from confide.learning._privacy import NoisySteps
from confide.learning._weights import StateDict

__all__ = ["LocalTraining", "LocalUpdate", "train_locally"]


class LocalTraining(BaseModel):
    """How a node trains in one round.

    Parameters
    ----------
    steps : int
        Optimiser steps this round; one epoch is about ``n / batch_size`` steps.
    batch_size : int
        *Expected* batch size: Poisson sampling at rate ``min(1, batch_size / n)``.
    learning_rate : float
        SGD step size.
    momentum : float
        SGD momentum (reset every round).
    clip_norm : float
        Per-sample gradient L2 bound (DP only).
    noise_multiplier : float or None
        Noise standard deviation over ``clip_norm``; ``None`` for plain SGD (no clipping,
        no noise: epsilon is infinite), see :func:`noise_multiplier_for`.
    secure_noise : bool
        Opacus' ``secure_mode`` noise, robust to floating-point attacks (default). It draws
        four Gaussian values per noise value; next to the per-sample gradients that costs
        nothing measurable (cnn28 and scatter28, batch 64 on 1,333 images: within 5 %).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=1, le=1_000_000)
    batch_size: int = Field(ge=1, le=1_000_000)
    learning_rate: float = Field(gt=0, le=1_000)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0, le=1e6)
    noise_multiplier: float | None = Field(default=None, gt=0, le=1e4)
    secure_noise: bool = True

    def sample_rate(self, n: int) -> float:
        """Poisson sampling rate on a local data set of ``n`` samples."""
        return min(1.0, self.batch_size / n)

    def noisy_steps(self, n: int) -> NoisySteps | None:
        """What this round costs in privacy on ``n`` samples; ``None`` without noise."""
        if self.noise_multiplier is None:
            return None
        return NoisySteps(self.noise_multiplier, self.sample_rate(n), self.steps)


@dataclass(frozen=True)
class LocalUpdate:
    """The result of one round of local training.

    Parameters
    ----------
    state : dict of str to torch.Tensor
        The trained weights (copies, on the CPU).
    mean_loss : float
        Mean cross-entropy over the samples drawn this round, before each step. Not covered
        by differential privacy: release it only through secure aggregation.
    samples : int
        Samples drawn over all steps (with Poisson sampling, a random number; not DP either).
    spent : NoisySteps or None
        What to charge the dataset's accountant with; ``None`` for plain SGD.
    """

    state: StateDict
    mean_loss: float
    samples: int
    spent: NoisySteps | None


def train_locally(
    model: nn.Module, data: Dataset, training: LocalTraining, *, seed: int | None = None
) -> LocalUpdate:
    """Train ``model`` in place on ``data`` for ``training.steps`` steps and return the update.

    Parameters
    ----------
    model : torch.nn.Module
        Built from the registry with the global weights loaded; left trained, without hooks.
        A fixed first layer (:class:`~confide.learning._frontend.FixedTransform`) is run
        once over ``data`` and cached; only the layers after it see the steps.
    data : Dataset
        The node's training split.
    training : LocalTraining
        Steps, batch size, learning rate, clipping and noise.
    seed : int, optional
        Fixes batches and noise, for tests and simulations; ``None`` draws a fresh seed
        from the OS. Never take it from the researcher.

    Returns
    -------
    LocalUpdate
        New weights, mean loss, and the privacy spent (``None`` without noise).
    """
    if len(data) == 0:
        raise ValueError("cannot train on an empty data set")
    front, trained = split_front(model)  # a fixed front end runs once over the data, not per step
    if front is not None:
        data = transformed(front, data)
    generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
    x = torch.from_numpy(np.array(data.x))  # a writable copy: torch refuses read-only arrays
    y = torch.from_numpy(np.array(data.y))
    q = training.sample_rate(len(data))
    model.train()
    if training.noise_multiplier is None:
        loss_sum, drawn = _plain_sgd(trained, x, y, training, q, generator)
    else:
        loss_sum, drawn = _dp_sgd(trained, x, y, training, training.noise_multiplier, q, generator)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mean_loss = loss_sum / drawn if drawn else math.nan
    return LocalUpdate(state, mean_loss, drawn, training.noisy_steps(len(data)))


def _poisson_batch(n: int, q: float, generator: torch.Generator) -> torch.Tensor:
    if q >= 1.0:
        return torch.arange(n)
    return torch.nonzero(torch.rand(n, generator=generator) < q).squeeze(1)


def _sgd(model: nn.Module, training: LocalTraining) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=training.learning_rate, momentum=training.momentum)


def _dp_sgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    training: LocalTraining,
    noise_multiplier: float,
    q: float,
    generator: torch.Generator,
) -> tuple[float, int]:
    # loss_reduction="sum" in the module: per-sample gradients of per-sample losses, also for an
    # empty batch (a mean over zero samples is NaN); DPOptimizer divides by the expected size.
    wrapped = GradSampleModule(model, loss_reduction="sum")
    optimizer = DPOptimizer(
        _sgd(model, training),
        noise_multiplier=noise_multiplier,
        max_grad_norm=training.clip_norm,
        expected_batch_size=q * len(x),
        loss_reduction="mean",
        generator=generator,
        secure_mode=training.secure_noise,
    )
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, drawn = 0.0, 0
    try:
        with warnings.catch_warnings():
            # Opacus' hooks on the first layer fire although the input needs no gradient: harmless.
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            for _ in range(training.steps):
                batch = _poisson_batch(len(x), q, generator)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(wrapped(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach())
                drawn += len(batch)
    finally:
        wrapped.to_standard_module()  # removes Opacus' hooks and per-sample attributes
    return loss_sum, drawn


def _plain_sgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    training: LocalTraining,
    q: float,
    generator: torch.Generator,
) -> tuple[float, int]:
    optimizer = _sgd(model, training)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    expected = q * len(x)
    loss_sum, drawn = 0.0, 0
    for _ in range(training.steps):
        batch = _poisson_batch(len(x), q, generator)
        if len(batch) == 0:
            continue
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x[batch]), y[batch])
        (loss / expected).backward()  # the same scale as DP-SGD's, so learning rates carry over
        optimizer.step()
        loss_sum += float(loss.detach())
        drawn += len(batch)
    return loss_sum, drawn
