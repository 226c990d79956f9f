"""Accounting: epsilon from histories of noisy steps, and the noise a target epsilon needs."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("opacus")

from confide.learning import Accounting, NoisySteps, epsilon_spent, noise_multiplier_for

DELTA = 1e-5


def test_noise_grows_as_epsilon_shrinks() -> None:
    sigmas = [noise_multiplier_for(eps, DELTA, sample_rate=0.05, steps=200) for eps in (8.0, 4.0, 1.0, 0.5)]

    assert all(s is not None for s in sigmas)
    assert sigmas == sorted(sigmas)  # type: ignore[type-var]
    assert len(set(sigmas)) == 4


@pytest.mark.parametrize(
    ("target", "q", "steps"), [(0.1, 0.05, 200), (1.0, 0.05, 200), (3.0, 0.034, 435), (50.0, 0.001, 10)]
)
def test_the_noise_found_meets_the_target_closely(target: float, q: float, steps: int) -> None:
    sigma = noise_multiplier_for(target, DELTA, sample_rate=q, steps=steps)
    assert sigma is not None

    spent = epsilon_spent([NoisySteps(sigma, q, steps)], DELTA)

    assert target * 0.99 <= spent <= target


def test_a_huge_target_needs_almost_no_noise() -> None:
    sigma = noise_multiplier_for(1e6, DELTA, sample_rate=0.01, steps=1)

    assert sigma is not None and sigma <= 1e-3
    assert epsilon_spent([NoisySteps(sigma, 0.01, 1)], DELTA) <= 1e6


def test_infinite_epsilon_means_no_noise() -> None:
    assert noise_multiplier_for(math.inf, DELTA, sample_rate=0.05, steps=200) is None


def test_composition_over_rounds_equals_one_long_run() -> None:
    rounds = [NoisySteps(1.1, 0.02, 50)] * 4

    assert epsilon_spent(rounds, DELTA) == pytest.approx(epsilon_spent([NoisySteps(1.1, 0.02, 200)], DELTA))
    assert epsilon_spent(rounds[:2], DELTA) < epsilon_spent(rounds, DELTA)


def test_mixed_histories_compose() -> None:
    a, b = NoisySteps(1.0, 0.02, 100), NoisySteps(2.0, 0.05, 100)

    both = epsilon_spent([a, b], DELTA)

    assert both > max(epsilon_spent([a], DELTA), epsilon_spent([b], DELTA))
    assert both < epsilon_spent([a], DELTA) + epsilon_spent([b], DELTA)  # RDP beats adding epsilons


def test_empty_history_spends_nothing() -> None:
    assert epsilon_spent([], DELTA) == 0.0
    assert epsilon_spent([NoisySteps(1.0, 0.1, 0)], DELTA) == 0.0


def test_prv_is_at_least_as_tight_as_rdp() -> None:
    history = [NoisySteps(1.0, 0.05, 100)]

    prv, rdp = epsilon_spent(history, DELTA, Accounting.PRV), epsilon_spent(history, DELTA, Accounting.RDP)

    assert 0 < prv <= rdp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_epsilon": 0.0}, "target epsilon must be positive"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"delta": 1.0}, "delta must lie strictly between 0 and 1"),
        ({"sample_rate": 1.5}, r"sample_rate must lie in \(0, 1\]"),
        ({"target_epsilon": 1e-4, "sample_rate": 1.0}, "out of reach"),
    ],
)
def test_invalid_requests_are_refused(kwargs: dict[str, float], message: str) -> None:
    args: dict[str, float] = {
        "target_epsilon": 1.0,
        "delta": DELTA,
        "sample_rate": 0.05,
        "steps": 100,
    } | kwargs

    with pytest.raises(ValueError, match=message):
        noise_multiplier_for(args["target_epsilon"], args["delta"], args["sample_rate"], int(args["steps"]))


def test_noisy_steps_are_validated() -> None:
    with pytest.raises(ValueError, match="noise_multiplier must be positive"):
        NoisySteps(0.0, 0.1, 1)
    with pytest.raises(ValueError, match="steps must not be negative"):
        NoisySteps(1.0, 0.1, -1)
