"""Distributed discrete Gaussian: sampler statistics, zCDP conversion, KLS21 accounting, calibration."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import ProtocolError
from confide.protocols.dp import (
    DistributedNoise,
    cdp_to_dp,
    distributed_epsilon,
    node_sigma,
    sample_discrete_gaussian,
)

SAMPLES = 200_000
deltas = st.floats(min_value=1e-15, max_value=0.5)
rhos = st.floats(min_value=1e-8, max_value=100.0)


def _exact_pmf(
    sigma: float, radius: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    radius = math.ceil(40 * sigma) + 10 if radius is None else radius
    support = np.arange(-radius, radius + 1, dtype=np.int64)
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2.0 * sigma**2))
    return support, weights / weights.sum()


def _brute_force_cdp_to_dp(rho: float, delta: float) -> float:
    alpha = 1.0 + np.exp(np.linspace(-25.0, 25.0, 400_001))
    eps = alpha * rho + (math.log(1.0 / delta) - np.log(alpha)) / (alpha - 1.0) + np.log1p(-1.0 / alpha)
    return max(0.0, float(eps.min()))


# -- sampler -----------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 3.0, 100.0, 1e4])
def test_sampler_matches_the_mean_and_variance_of_the_discrete_gaussian(sigma: float) -> None:
    support, pmf = _exact_pmf(sigma)
    exact_variance = float(np.sum(pmf * support.astype(np.float64) ** 2))

    samples = sample_discrete_gaussian(sigma, SAMPLES)

    assert samples.dtype == np.int64 and samples.shape == (SAMPLES,)
    values = samples.astype(np.float64)
    assert abs(values.mean()) < 6 * math.sqrt(exact_variance / SAMPLES)
    fourth = float(np.mean(values**4))
    variance_sd = math.sqrt((fourth - exact_variance**2) / SAMPLES)
    assert abs(values.var() - exact_variance) < 6 * variance_sd
    # The discrete Gaussian's variance is below sigma^2, and indistinguishable from it for sigma >= 1.
    assert exact_variance <= sigma**2 * (1 + 1e-12) and (
        sigma < 1 or exact_variance == pytest.approx(sigma**2, rel=1e-9)
    )


@pytest.mark.parametrize("sigma", [0.5, 3.0, 100.0])
def test_sampler_is_symmetric(sigma: float) -> None:
    samples = sample_discrete_gaussian(sigma, SAMPLES)

    positive, negative = int(np.sum(samples > 0)), int(np.sum(samples < 0))

    assert abs(positive - negative) < 6 * math.sqrt(positive + negative)


def test_sampler_frequencies_pass_a_chi_square_test_against_the_exact_pmf() -> None:
    support, pmf = _exact_pmf(2.0, radius=100)
    samples = sample_discrete_gaussian(2.0, SAMPLES)
    # Bins -7..7 one by one, and the two tails |k| >= 8 (about 20 expected draws each).

    def chi_square(probabilities: npt.NDArray[np.float64]) -> float:
        observed = np.array(
            [np.sum(samples < -7), *(np.sum(samples == k) for k in range(-7, 8)), np.sum(samples > 7)]
        )
        expected = SAMPLES * np.array(
            [
                probabilities[support < -7].sum(),
                *(probabilities[support == k].sum() for k in range(-7, 8)),
                probabilities[support > 7].sum(),
            ]
        )
        return float(np.sum((observed - expected) ** 2 / expected))

    # 16 degrees of freedom; 59 is the 1 - 1e-6 quantile (Wilson-Hilferty approximation).
    assert chi_square(pmf) < 59.0
    # The test has power: a 5% wrong sigma is rejected by far.
    assert chi_square(_exact_pmf(2.1, radius=100)[1]) > 59.0


def test_sigma_zero_gives_zeros_and_size_zero_gives_an_empty_array() -> None:
    assert sample_discrete_gaussian(0.0, 1000).tolist() == [0] * 1000
    empty = sample_discrete_gaussian(5.0, 0)
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_every_call_draws_fresh_randomness() -> None:
    first = sample_discrete_gaussian(1e4, 1000)
    second = sample_discrete_gaussian(1e4, 1000)

    assert not np.array_equal(first, second)


def test_all_randomness_comes_from_the_secrets_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the key fixed, the output is fixed: no other generator (numpy's, random's) feeds it.
    monkeypatch.setattr(secrets, "token_bytes", lambda size: bytes(range(size)))

    first = sample_discrete_gaussian(50.0, 5000)
    second = sample_discrete_gaussian(50.0, 5000)

    assert np.array_equal(first, second)


# -- zCDP to (epsilon, delta) --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(rho=rhos, delta=deltas)
def test_cdp_to_dp_beats_the_classic_bound_and_matches_a_brute_force_minimum(
    rho: float, delta: float
) -> None:
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))

    epsilon = cdp_to_dp(rho, delta)

    assert 0.0 <= epsilon < classic
    brute = _brute_force_cdp_to_dp(rho, delta)
    assert epsilon <= brute + 1e-9 * max(1.0, brute)
    assert epsilon == pytest.approx(brute, rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(rho=rhos, factor=st.floats(min_value=1.001, max_value=100.0), delta=deltas)
def test_cdp_to_dp_grows_with_rho_and_shrinks_with_delta(rho: float, factor: float, delta: float) -> None:
    epsilon = cdp_to_dp(rho, delta)

    assert cdp_to_dp(rho * factor, delta) >= epsilon
    assert cdp_to_dp(rho, delta / factor) >= epsilon


def test_cdp_to_dp_of_zero_rho_is_zero() -> None:
    assert cdp_to_dp(0.0, 1e-6) == 0.0


# -- KLS21 accounting ----------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    sigma=st.floats(min_value=0.05, max_value=1e4),
    l2=st.floats(min_value=1.0, max_value=100.0),
    spread=st.floats(min_value=1.0, max_value=10.0),
    delta=deltas,
)
def test_one_party_is_the_single_discrete_gaussian(
    sigma: float, l2: float, spread: float, delta: float
) -> None:
    epsilon = distributed_epsilon(sigma=sigma, parties=1, l1=l2 * spread, l2=l2, delta=delta)

    assert epsilon == cdp_to_dp(l2**2 / (2 * sigma**2), delta)


def test_two_parties_match_the_kls21_formula_by_hand() -> None:
    # sigma = 1, n = 2, l1 = l2 = 1 (so one nonzero coordinate): tau = 10 exp(-2 pi^2 * 1/2).
    tau = 10 * math.exp(-(math.pi**2))
    first = 1 / 2 + 2 * tau
    second = 1 / 2 + 2 * tau / math.sqrt(2) + tau**2
    third = (1 / math.sqrt(2) + tau) ** 2
    expected = cdp_to_dp(min(first, second, third, 1.0) / 2, 1e-5)

    epsilon = distributed_epsilon(sigma=1.0, parties=2, l1=1.0, l2=1.0, delta=1e-5)

    assert epsilon == pytest.approx(expected, rel=1e-12)
    assert epsilon > cdp_to_dp(1 / 4, 1e-5)  # strictly worse than a central N_Z(0, 2)


def test_with_negligible_tau_the_sum_is_the_central_discrete_gaussian() -> None:
    epsilon = distributed_epsilon(sigma=10.0, parties=100, l1=4.0, l2=2.0, delta=1e-6)

    assert epsilon == pytest.approx(cdp_to_dp(2.0**2 / (2 * 100 * 10.0**2), 1e-6), rel=1e-12)


def test_below_half_sigma_only_the_single_gaussian_bound_applies() -> None:
    epsilon = distributed_epsilon(sigma=0.4, parties=50, l1=1.0, l2=1.0, delta=1e-5)

    assert epsilon == cdp_to_dp(1 / (2 * 0.4**2), 1e-5)


@settings(max_examples=60, deadline=None)
@given(
    sigma=st.floats(min_value=0.05, max_value=1e3),
    factor=st.floats(min_value=1.01, max_value=10.0),
    parties=st.integers(min_value=1, max_value=300),
    delta=deltas,
)
def test_epsilon_decreases_with_sigma(sigma: float, factor: float, parties: int, delta: float) -> None:
    def epsilon(scale: float) -> float:
        return distributed_epsilon(sigma=scale, parties=parties, l1=3.0, l2=2.0, delta=delta)

    # Strictly, until epsilon reaches its floor 0 (delta then covers the whole privacy loss).
    assert epsilon(sigma * factor) < epsilon(sigma) or epsilon(sigma) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    sigma=st.floats(min_value=0.05, max_value=1e3),
    parties=st.integers(min_value=1, max_value=300),
    more=st.integers(min_value=1, max_value=300),
    delta=deltas,
)
def test_epsilon_never_grows_with_more_parties(sigma: float, parties: int, more: int, delta: float) -> None:
    def epsilon(count: int) -> float:
        return distributed_epsilon(sigma=sigma, parties=count, l1=5.0, l2=3.0, delta=delta)

    assert epsilon(parties + more) <= epsilon(parties)
    if sigma >= 1.0 and epsilon(parties) > 0.0:
        assert epsilon(parties + more) < epsilon(parties)


# -- calibration ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(min_value=0.05, max_value=10.0),
    delta=st.floats(min_value=1e-12, max_value=1e-3),
    parties=st.integers(min_value=1, max_value=100),
    l2=st.floats(min_value=1.0, max_value=100.0),
    spread=st.floats(min_value=1.0, max_value=10.0),
)
def test_node_sigma_is_the_smallest_sigma_meeting_the_target(
    epsilon: float, delta: float, parties: int, l2: float, spread: float
) -> None:
    def reached(scale: float) -> float:
        return distributed_epsilon(sigma=scale, parties=parties, l1=l2 * spread, l2=l2, delta=delta)

    sigma = node_sigma(epsilon=epsilon, delta=delta, parties=parties, l1=l2 * spread, l2=l2)

    assert reached(sigma) <= epsilon
    assert reached(sigma * (1 - 1.5e-6)) > epsilon
    if sigma > 0.6:  # away from the sigma = 1/2 jump, epsilon is continuous in sigma
        assert reached(sigma) == pytest.approx(epsilon, rel=1e-4)


def test_distributed_noise_holds_its_target_for_every_survivor_count_above_the_threshold() -> None:
    noise = DistributedNoise.for_target(1.0, 1e-6, 10, 12.0, 4.0)

    assert (noise.epsilon, noise.delta, noise.parties, noise.l1, noise.l2) == (1.0, 1e-6, 10, 12.0, 4.0)
    assert noise.sigma == node_sigma(epsilon=1.0, delta=1e-6, parties=10, l1=12.0, l2=4.0)
    at_threshold = noise.achieved(10)
    assert at_threshold <= 1.0
    assert noise.achieved(11) < at_threshold and noise.achieved(1000) < noise.achieved(11)
    assert noise.achieved(9) > 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        noise.sigma = 0.0  # type: ignore[misc]


def test_a_large_target_still_holds_for_many_survivors() -> None:
    # sigma ends below 1/2, where the tau term grows with n: the guarantee must not degrade.
    noise = DistributedNoise.for_target(30.0, 1e-6, 10, 1.0, 1.0)

    assert noise.sigma < 0.5
    assert all(noise.achieved(count) <= 30.0 for count in (10, 100, 5000))


# -- errors --------------------------------------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[], object], str]] = [
    ("negative sigma", lambda: sample_discrete_gaussian(-1.0, 5), "sigma must be a finite number >= 0"),
    ("nan sigma", lambda: sample_discrete_gaussian(math.nan, 5), "sigma"),
    ("infinite sigma", lambda: sample_discrete_gaussian(math.inf, 5), "sigma"),
    ("huge sigma", lambda: sample_discrete_gaussian(2.0**41, 5), "2^40"),
    ("negative size", lambda: sample_discrete_gaussian(1.0, -1), "size must be an integer >= 0"),
    ("negative rho", lambda: cdp_to_dp(-0.1, 1e-5), "rho must be >= 0"),
    ("zero delta", lambda: cdp_to_dp(1.0, 0.0), "delta must lie strictly between 0 and 1"),
    ("delta one", lambda: cdp_to_dp(1.0, 1.0), "delta"),
    (
        "zero parties",
        lambda: distributed_epsilon(sigma=1.0, parties=0, l1=1.0, l2=1.0, delta=1e-5),
        "parties must be an integer >= 1",
    ),
    (
        "swapped sensitivities",
        lambda: distributed_epsilon(sigma=1.0, parties=2, l1=1.0, l2=3.0, delta=1e-5),
        "l1 = 1.0 is below l2 = 3.0",
    ),
    ("zero epsilon", lambda: node_sigma(epsilon=0.0, delta=1e-5, parties=3, l1=1.0, l2=1.0), "epsilon"),
    ("negative epsilon", lambda: node_sigma(epsilon=-1.0, delta=1e-5, parties=3, l1=1.0, l2=1.0), "epsilon"),
    ("delta above one", lambda: node_sigma(epsilon=1.0, delta=2.0, parties=3, l1=1.0, l2=1.0), "delta"),
    ("bool parties", lambda: node_sigma(epsilon=1.0, delta=1e-5, parties=True, l1=1.0, l2=1.0), "parties"),
    ("zero l2", lambda: node_sigma(epsilon=1.0, delta=1e-5, parties=3, l1=1.0, l2=0.0), "l2 must be"),
    ("negative l2", lambda: node_sigma(epsilon=1.0, delta=1e-5, parties=3, l1=1.0, l2=-2.0), "l2 must be"),
    (
        "unreachable target",
        lambda: node_sigma(epsilon=1e-13, delta=1e-15, parties=3, l1=1.0, l2=1.0),
        "sigma above 2^40",
    ),
    ("no survivors", lambda: DistributedNoise(1.0, 1e-5, 3.0, 2, 1.0, 1.0).achieved(0), "survivors"),
]


@pytest.mark.parametrize(
    ("call", "message"), [(c, m) for _, c, m in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS]
)
def test_bad_inputs_raise_a_protocol_error_naming_the_value(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        call()
