"""Privacy accounting for DP-SGD: epsilon from a history of noisy steps, and noise from a target.

DP-SGD's privacy loss is that of the subsampled Gaussian mechanism, composed over every
step. A history is a list of :class:`NoisySteps` ``(noise_multiplier, sample_rate,
steps)``, the format of Opacus' accountants; the epsilon of a history at a given delta
comes from Opacus' RDP accountant (Mironov 2017; Mironov, Talwar & Zhang 2019) or its PRV
accountant (Gopi, Lee & Wutschitz 2021: numerically tighter, returns its certified upper
bound, slower). Both only ever over-state epsilon.

:func:`noise_multiplier_for` answers the researcher's question the other way round:
which noise multiplier keeps the *whole* training (all rounds times all local steps at
sample rate q) within a target (epsilon, delta). It bisects on the accountant, so the
epsilon it promises is what the accountant will later report, never more.
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

__all__ = ["Accounting", "NoisySteps", "epsilon_spent", "noise_multiplier_for"]

# Bisection stops when the promised epsilon is within this fraction below the target.
_RELATIVE_TOLERANCE = 1e-3
_MAX_NOISE = 1e4
_MIN_NOISE = 1e-3
# Opacus' default RDP orders stop at 63, which caps how small an epsilon RDP can certify
# (log(1/delta) / 62 is already 0.19 at delta = 1e-5); larger orders lift that floor.
_RDP_ORDERS = [*RDPAccountant.DEFAULT_ALPHAS, 80, 96, 128, 192, 256, 384, 512, 1024]


class Accounting(enum.StrEnum):
    """Which Opacus accountant turns a history into epsilon."""

    RDP = "rdp"
    PRV = "prv"


@dataclass(frozen=True)
class NoisySteps:
    """``steps`` DP-SGD steps, noise ``noise_multiplier`` x clip norm, Poisson rate ``sample_rate``."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be positive and finite, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must lie in (0, 1], got {self.sample_rate}")
        if self.steps < 0:
            raise ValueError(f"steps must not be negative, got {self.steps}")


def epsilon_spent(
    history: Iterable[NoisySteps], delta: float, accounting: Accounting = Accounting.RDP
) -> float:
    """The epsilon, at ``delta``, of running every entry of ``history`` one after another.

    Entries with the same noise and sample rate are merged first (composition adds them up
    exactly), so a long history of identical rounds costs one accountant term.
    """
    _check_delta(delta)
    merged: dict[tuple[float, float], int] = {}
    for h in history:
        key = (h.noise_multiplier, h.sample_rate)
        merged[key] = merged.get(key, 0) + h.steps
    entries = [(sigma, q, steps) for (sigma, q), steps in merged.items() if steps > 0]
    if not entries:
        return 0.0
    with warnings.catch_warnings():
        # Opacus warns "optimal order is the largest alpha": the bound holds, it is only less tight.
        warnings.simplefilter("ignore", UserWarning)
        if accounting is Accounting.PRV:
            prv = PRVAccountant()
            prv.history = entries
            return float(prv.get_epsilon(delta=delta))
        rdp = sum(np.asarray(_rdp_of_one_step(sigma, q)) * steps for sigma, q, steps in entries)
        eps, _ = rdp_analysis.get_privacy_spent(orders=_RDP_ORDERS, rdp=rdp, delta=delta)
    return float(eps)


@lru_cache(maxsize=4096)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    # Renyi divergences add up under composition, so one step's, times the steps, is exact;
    # cached because a dataset's history repeats the same (noise, rate) round after round.
    one = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_RDP_ORDERS
    )
    return tuple(float(v) for v in one)


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accounting: Accounting = Accounting.RDP,
) -> float | None:
    """The smallest noise multiplier (within 0.1 %) keeping ``steps`` steps within (target_epsilon, delta).

    Parameters
    ----------
    target_epsilon : float
        Epsilon for the whole training; ``math.inf`` means no differential privacy.
    delta : float
        In (0, 1); commonly below 1 / (number of records).
    sample_rate : float
        Poisson sampling rate q = expected batch size / local data set size.
    steps : int
        Every noisy step the training will take: rounds x local steps per round.
    accounting : Accounting
        The accountant that will later check the spend.

    Returns
    -------
    float or None
        The noise multiplier; ``None`` when ``target_epsilon`` is infinite (plain SGD).
        ``epsilon_spent([NoisySteps(result, sample_rate, steps)], delta) <= target_epsilon``.

    Raises
    ------
    ValueError
        Invalid arguments, or a target so small that no noise below 10,000 reaches it.
    """
    if target_epsilon == math.inf:
        return None
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target epsilon must be positive, got {target_epsilon}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")

    def eps(sigma: float) -> float:
        return epsilon_spent([NoisySteps(sigma, sample_rate, steps)], delta, accounting)

    bracket = _bracket(eps, target_epsilon)
    if bracket is None:
        raise ValueError(
            f"epsilon {target_epsilon} at delta {delta} is out of reach for {steps} steps at sample "
            f"rate {sample_rate:.4g}; take fewer steps, a lower sample rate, or a larger epsilon"
        )
    return _search(eps, target_epsilon, *bracket)


_Point = tuple[float, float]  # (sigma, eps(sigma))


def _bracket(eps: Callable[[float], float], target: float) -> tuple[_Point, _Point] | None:
    """Noise levels either side of the target, eps(low) > target >= eps(high); ``None`` if out of reach.

    Below ``_MIN_NOISE`` the search stops and takes that noise as the answer, though less would do.
    """
    high = (1.0, eps(1.0))
    low = high
    while high[1] > target:
        if high[0] >= _MAX_NOISE:
            return None
        low, high = high, (2 * high[0], eps(2 * high[0]))
    while low[1] <= target and low[0] > _MIN_NOISE:
        high, low = low, (low[0] / 2, eps(low[0] / 2))
    return (low, high) if low[1] > target else (low, low)


def _search(eps: Callable[[float], float], target: float, low: _Point, high: _Point) -> float:
    """Shrink the bracket until eps(high) lies within the tolerance below the target; return high's sigma.

    log(epsilon) is close to linear in log(sigma), so each guess interpolates there (false
    position), kept a tenth of the bracket away from its ends so that the bracket always shrinks.
    """
    aim = math.log(target * (1 - _RELATIVE_TOLERANCE / 2))
    while high[1] < target * (1 - _RELATIVE_TOLERANCE) and high[0] - low[0] > _RELATIVE_TOLERANCE * high[0]:
        if math.isfinite(low[1]) and high[1] > 0:
            t = (math.log(low[1]) - aim) / (math.log(low[1]) - math.log(high[1]))
            sigma = math.exp(
                math.log(low[0]) + min(0.9, max(0.1, t)) * (math.log(high[0]) - math.log(low[0]))
            )
        else:
            sigma = (low[0] + high[0]) / 2
        point = (sigma, eps(sigma))
        if point[1] <= target:
            high = point
        else:
            low = point
    return high[0]


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie strictly between 0 and 1, got {delta}")
