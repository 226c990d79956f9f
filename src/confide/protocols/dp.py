"""Distributed discrete-Gaussian noise for secure aggregation, and its privacy accounting.

Secure aggregation sums integer (fixed-point) vectors in Z_2^64, so the noise that makes
the sum differentially private must be integer too. Each node adds its own discrete
Gaussian N_Z(0, sigma^2) before masking; the hub sees only the noisy sum. The noise of
at least ``parties`` surviving honest nodes must give the target (epsilon, delta).

References
----------
[CKS20] C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential
    Privacy", NeurIPS 2020, arXiv:2004.00010. Algorithm 3 (sampler), Corollary 13
    (tight conversion of concentrated DP to approximate DP).
[KLS21] P. Kairouz, Z. Liu, T. Steinke, "The Distributed Discrete Gaussian Mechanism for
    Federated Learning with Secure Aggregation", ICML 2021, arXiv:2102.06387.
    Theorem 1 and Proposition 14 (Renyi divergence of a sum of n discrete Gaussians).

Privacy of the sum (KLS21 Proposition 14, with ``n`` summands of N_Z(0, sigma^2) per
coordinate, sigma >= 1/2, a shift Delta in Z^d, and every order alpha >= 1)::

    tau_n  = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))
    D_alpha <= min( alpha/2 * l2^2/(n sigma^2) + tau_n d,
                    alpha/2 * (l2^2/(n sigma^2) + 2 l1 tau_n/(sqrt(n) sigma) + tau_n^2 d),
                    alpha/2 * (l2/(sqrt(n) sigma) + tau_n sqrt(d))^2 )

Since alpha >= 1, ``tau_n d <= alpha tau_n d`` and each bound is ``alpha * eps^2 / 2``,
i.e. (eps^2 / 2)-zCDP with (KLS21 Theorem 1 is the first and last of these)::

    eps^2 = min( l2^2/(n sigma^2) + 2 tau_n d,
                 l2^2/(n sigma^2) + 2 l1 tau_n/(sqrt(n) sigma) + tau_n^2 d,
                 (l2/(sqrt(n) sigma) + tau_n sqrt(d))^2 )

Two safe refinements, used by :func:`distributed_epsilon`:

1. The bounds add one term per coordinate (the noise is a product distribution and
   Renyi divergence is additive over products); a coordinate where Delta is 0 adds 0.
   Delta is a difference of integer vectors, so it has at most ``min(l1, l2^2)``
   nonzero coordinates: that count replaces ``d``, so no dimension is needed.
2. The sum of n noises is the sum of any k <= n of them plus independent noise, a
   post-processing of the k-sum; so the sum of n is at least as private as the best
   k-sum, ``rho = min_{1<=k<=n} eps_k^2 / 2``. For k = 1, tau = 0 and this is the single
   discrete Gaussian's ``l2^2/(2 sigma^2)`` [CKS20 Theorem 4, added over coordinates,
   valid for every sigma > 0]. This also makes the guarantee monotone in the number of
   survivors, and is the only bound used when sigma < 1/2.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from confide._errors import ProtocolError
from confide.crypto import expand_mask

__all__ = [
    "DistributedNoise",
    "cdp_to_dp",
    "distributed_epsilon",
    "node_sigma",
    "sample_discrete_gaussian",
]

# Beyond 2^40 the float64 arithmetic of the sampler would lose integer resolution in
# the discrete Laplace proposals (about 37 * sigma, exact below 2^53).
_MAX_SIGMA = 2.0**40
# Candidates per keystream expansion: bounds peak memory to a few tens of MiB.
_BATCH = 1 << 20
_TWO_POW_MINUS_53 = 2.0**-53
# KLS21 Proposition 14 needs sigma >= 1/2 for sums of two or more discrete Gaussians.
_KLS_MIN_SIGMA = 0.5
_RELATIVE_TOLERANCE = 1e-6


def _fail(message: str) -> ProtocolError:
    return ProtocolError(message)


def _check_finite(name: str, value: float, *, positive: bool, hint: str) -> float:
    value = float(value)
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise _fail(f"{name} must be a finite number {bound}, got {value!r}; {hint}")
    return value


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not 0.0 < delta < 1.0:
        raise _fail(
            f"delta must lie strictly between 0 and 1, got {delta!r}; typical values are 1e-5 to 1e-9"
        )
    return delta


def _check_count(name: str, value: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise _fail(f"{name} must be an integer >= 1, got {value!r}; {hint}")
    return int(value)


def _check_sensitivity(l1: float, l2: float) -> tuple[float, float]:
    l1 = _check_finite("l1", l1, positive=True, hint="pass the L1 sensitivity of the integer vector")
    l2 = _check_finite("l2", l2, positive=True, hint="pass the L2 sensitivity of the integer vector")
    # ||x||_2 <= ||x||_1 for every vector: l1 < l2 means the two were swapped or mistyped.
    if l1 < l2:
        raise _fail(
            f"l1 = {l1!r} is below l2 = {l2!r}, impossible since ||x||_2 <= ||x||_1; check their order"
        )
    return l1, l2


# -- sampler (CKS20 Algorithm 3, vectorised) -------------------------------------------


def _random_words(count: int) -> npt.NDArray[np.uint64]:
    # A fresh 256-bit key per expansion: expand_mask uses a fixed CTR nonce, so a key
    # must never be reused; secrets draws it from the operating system's CSPRNG.
    return expand_mask(secrets.token_bytes(32), count, bits=64).astype(np.uint64, copy=False)


def _unit_open(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Uniform floats in (0, 1] on the grid k * 2^-53 (exact in float64)."""
    return ((words >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * _TWO_POW_MINUS_53


def _unit_closed_open(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Uniform floats in [0, 1) on the grid k * 2^-53 (exact in float64)."""
    return (words >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def _accepted_candidates(sigma: float, count: int) -> npt.NDArray[np.int64]:
    """One batch of CKS20 Algorithm 3: ``count`` proposals, the accepted ones returned."""
    t = math.floor(sigma) + 1
    words = _random_words(3 * count)
    # Step 1: Y ~ Lap_Z(t), as the difference of two Geometric(1 - e^{-1/t}) variables on
    # {0, 1, ...}: P(G >= k) = P(U <= e^{-k/t}) = e^{-k/t} for G = floor(-t ln U).
    geometric: npt.NDArray[np.float64] = np.floor(-t * np.log(_unit_open(words[: 2 * count])))
    proposals: npt.NDArray[np.float64] = geometric[:count] - geometric[count:]
    # Step 2: accept with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)).
    accept = np.exp(-np.square(np.abs(proposals) - sigma * sigma / t) / (2.0 * sigma * sigma))
    keep = _unit_closed_open(words[2 * count :]) < accept
    return proposals[keep].astype(np.int64)


def sample_discrete_gaussian(sigma: float, size: int) -> npt.NDArray[np.int64]:
    """Draw i.i.d. samples of the discrete Gaussian N_Z(0, sigma^2).

    Rejection sampling from the discrete Laplace, CKS20 Algorithm 3, run on whole
    batches with numpy. Every random bit comes from an AES-256-CTR keystream
    (:func:`confide.crypto.expand_mask`) under a fresh key from :mod:`secrets`, never
    from numpy's or Python's pseudorandom generators.

    As in TF-Privacy's vectorised sampler, the discrete Laplace proposals (via
    ``floor(-t ln U)``) and the acceptance test ``U < exp(-(|Y| - sigma^2/t)^2 /
    (2 sigma^2))`` use float64 arithmetic on uniforms with 53-bit resolution, not the
    exact rational arithmetic of CKS20. So the samples are not exact: each probability
    carries a relative rounding error near 2^-52 and the proposals are cut off at about
    37 * t (the smallest uniform is 2^-53). The output law is within a total-variation
    distance of roughly 1e-15 per coordinate of N_Z(0, sigma^2); a strict analysis adds
    that (times the number of coordinates) to delta. The outputs are integers, so the
    low-order-bit attack on floating-point noise (Mironov, CCS 2012) does not apply.

    Parameters
    ----------
    sigma
        Scale of the discrete Gaussian, ``0 <= sigma <= 2^40``; 0 means no noise.
    size
        Number of samples, ``>= 0``.

    Returns
    -------
    numpy.ndarray
        ``size`` samples of dtype ``int64``.

    Raises
    ------
    ProtocolError
        If ``sigma`` is negative, NaN, infinite or above 2^40, or ``size`` is negative.
    """
    hint = "pass the per-node noise scale from node_sigma()"
    sigma = _check_finite("sigma", sigma, positive=False, hint=hint)
    if sigma > _MAX_SIGMA:
        raise _fail(f"sigma = {sigma!r} exceeds 2^40, beyond the sampler's float64 precision; {hint}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise _fail(f"size must be an integer >= 0, got {size!r}; pass the vector's length")
    samples = np.zeros(int(size), dtype=np.int64)
    if sigma == 0.0:
        return samples
    filled = 0
    while filled < size:
        needed = int(size) - filled
        # Algorithm 3 accepts about 46% of proposals for tiny sigma, 76% for large sigma.
        accepted = _accepted_candidates(sigma, min(_BATCH, needed * 2 + 64))
        taken = min(accepted.size, needed)
        samples[filled : filled + taken] = accepted[:taken]
        filled += taken
    return samples


# -- accounting --------------------------------------------------------------------------


def _cdp_epsilon_at(log_a: float, rho: float, log_inv_delta: float) -> float:
    """CKS20 Corollary 13's epsilon at order alpha = 1 + e^log_a."""
    a = math.exp(log_a)
    log_alpha = math.log1p(a)
    # eps(alpha) = alpha rho + (ln(1/delta) - ln alpha)/(alpha - 1) + ln(1 - 1/alpha),
    # with alpha - 1 = a and ln(1 - 1/alpha) = ln a - ln alpha (stable near alpha = 1).
    return (1.0 + a) * rho + (log_inv_delta - log_alpha) / a + log_a - log_alpha


def cdp_to_dp(rho: float, delta: float) -> float:
    """Convert rho-zCDP to (epsilon, delta)-DP with the tight bound of CKS20 Corollary 13.

    ``epsilon = inf_{alpha > 1} alpha rho + (ln(1/delta) - ln alpha)/(alpha - 1)
    + ln(1 - 1/alpha)``, minimised numerically over ``ln(alpha - 1)`` (a coarse grid
    around the classic optimum ``alpha - 1 = sqrt(ln(1/delta)/rho)``, then a
    golden-section search). Never worse than ``rho + 2 sqrt(rho ln(1/delta))``
    (Bun and Steinke 2016), which it also evaluates and takes the minimum with.

    Parameters
    ----------
    rho
        The zCDP parameter, ``>= 0`` (``inf`` gives ``inf``).
    delta
        The target delta, in (0, 1).

    Returns
    -------
    float
        The epsilon, ``>= 0``.

    Raises
    ------
    ProtocolError
        If ``rho`` is negative or NaN, or ``delta`` is not in (0, 1).
    """
    delta = _check_delta(delta)
    rho = float(rho)
    if math.isnan(rho) or rho < 0:
        raise _fail(f"rho must be >= 0, got {rho!r}; it is the zCDP parameter of the mechanism")
    if rho == 0.0 or math.isinf(rho):
        return rho
    log_inv_delta = -math.log(delta)
    classic = rho + 2.0 * math.sqrt(rho * log_inv_delta)
    centre = 0.5 * math.log(log_inv_delta / rho)
    grid = [centre + step / 10.0 for step in range(-200, 201)]
    values = [_cdp_epsilon_at(x, rho, log_inv_delta) for x in grid]
    best = min(range(len(grid)), key=values.__getitem__)
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):  # shrinks the 0.2-wide bracket below 1e-13
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if _cdp_epsilon_at(left, rho, log_inv_delta) <= _cdp_epsilon_at(right, rho, log_inv_delta):
            high = right
        else:
            low = left
    refined = _cdp_epsilon_at((low + high) / 2.0, rho, log_inv_delta)
    return max(0.0, min(refined, values[best], classic))


def _distributed_rho(sigma: float, parties: int, l1: float, l2: float) -> float:
    """The zCDP rho of the module docstring: min over k <= parties of KLS21's eps_k^2 / 2."""
    if sigma == 0.0:
        return math.inf
    single = l2**2 / (2.0 * sigma**2)  # one discrete Gaussian, tau = 0 [CKS20]
    if parties == 1 or sigma < _KLS_MIN_SIGMA:
        return single
    # Refinement 1: at most min(l1, l2^2) nonzero integer coordinates; the small slack
    # keeps rounding (sqrt(3)**2 < 3) from undercounting, which would be unsafe.
    nonzero = max(1.0, math.floor(min(l1, l2 * l2) * (1.0 + 1e-12) + 1e-9))
    k = np.arange(1, parties + 1, dtype=np.float64)
    ratios = k[:-1] / (k[:-1] + 1.0)
    tau = 10.0 * np.concatenate(([0.0], np.cumsum(np.exp(-2.0 * math.pi**2 * sigma**2 * ratios))))
    scaled_l2 = l2 / (np.sqrt(k) * sigma)
    first = scaled_l2**2 + 2.0 * tau * nonzero
    second = scaled_l2**2 + 2.0 * l1 * tau / (np.sqrt(k) * sigma) + tau**2 * nonzero
    third = (scaled_l2 + tau * math.sqrt(nonzero)) ** 2
    eps_squared = np.minimum(np.minimum(first, second), third)
    # Refinement 2: post-processing, the best k <= parties.
    return min(single, float(eps_squared.min()) / 2.0)


def distributed_epsilon(*, sigma: float, parties: int, l1: float, l2: float, delta: float) -> float:
    """The epsilon, at ``delta``, of a sum of ``parties`` independent N_Z(0, sigma^2) noises.

    The released value is ``x + sum_i Z_i`` for an integer vector ``x`` whose change by
    one individual has L1 norm at most ``l1`` and L2 norm at most ``l2``. Its privacy is
    ``rho``-zCDP with ``rho = min_{1<=k<=parties} eps_k^2 / 2`` (module docstring:
    KLS21 Proposition 14 / Theorem 1 with ``tau_k = 10 sum_{j=1}^{k-1} exp(-2 pi^2
    sigma^2 j/(j+1))`` and ``d`` replaced by ``min(l1, l2^2)``), then converted by
    :func:`cdp_to_dp`. For ``parties == 1`` this is ``cdp_to_dp(l2^2/(2 sigma^2), delta)``.

    Parameters
    ----------
    sigma
        Each node's noise scale, ``>= 0`` (0 gives ``inf``).
    parties
        Number of nodes whose noise is in the sum, ``>= 1``.
    l1, l2
        L1 and L2 sensitivity of the integer vector, ``l1 >= l2 > 0``, in the integer
        units of the fixed-point encoding (the real-valued sensitivity times the scale).
    delta
        The target delta, in (0, 1).

    Returns
    -------
    float
        The epsilon; non-increasing in ``sigma`` and in ``parties``.

    Raises
    ------
    ProtocolError
        If any argument is out of range.
    """
    sigma = _check_finite("sigma", sigma, positive=False, hint="pass the per-node noise scale")
    parties = _check_count("parties", parties, "pass the number of nodes whose noise is summed")
    l1, l2 = _check_sensitivity(l1, l2)
    delta = _check_delta(delta)
    return cdp_to_dp(_distributed_rho(sigma, parties, l1, l2), delta)


def node_sigma(*, epsilon: float, delta: float, parties: int, l1: float, l2: float) -> float:
    """The smallest per-node sigma whose sum over ``parties`` nodes gives (epsilon, delta)-DP.

    Bisection, to a relative tolerance of 1e-6, on :func:`distributed_epsilon`, which
    is non-increasing in sigma; the upper end is returned, so the target always holds.

    Parameters
    ----------
    epsilon, delta
        The target, ``epsilon > 0`` and ``0 < delta < 1``.
    parties
        The guaranteed minimum number of surviving honest nodes (the secure-aggregation
        threshold): the margin for dropouts. More survivors only add privacy.
    l1, l2
        L1 and L2 sensitivity of the integer vector, ``l1 >= l2 > 0``.

    Returns
    -------
    float
        The per-node sigma, at most 2^40.

    Raises
    ------
    ProtocolError
        If an argument is out of range, or the target needs a sigma above 2^40.
    """
    epsilon = _check_finite("epsilon", epsilon, positive=True, hint="pass the target privacy loss")
    delta = _check_delta(delta)
    parties = _check_count("parties", parties, "pass the secure-aggregation threshold (minimum survivors)")
    l1, l2 = _check_sensitivity(l1, l2)

    def meets(sigma: float) -> bool:
        return cdp_to_dp(_distributed_rho(sigma, parties, l1, l2), delta) <= epsilon

    high = 1.0
    while not meets(high):
        high *= 2.0
        if high > _MAX_SIGMA:
            raise _fail(
                f"epsilon = {epsilon!r} at delta = {delta!r} needs a per-node sigma above 2^40 for "
                f"l2 = {l2!r}; raise epsilon or lower the sensitivity"
            )
    low = high / 2.0
    while meets(low):
        high, low = low, low / 2.0
    while high - low > _RELATIVE_TOLERANCE * high:
        middle = (low + high) / 2.0
        if meets(middle):
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class DistributedNoise:
    """Per-node discrete-Gaussian noise calibrated for a secure-aggregation round.

    Each surviving node adds ``sample_discrete_gaussian(sigma, d)`` to its integer
    vector; with at least ``parties`` honest survivors the sum is (epsilon, delta)-DP
    for sensitivities ``l1`` and ``l2``.

    Attributes
    ----------
    epsilon, delta
        The target privacy guarantee.
    sigma
        Each node's noise scale.
    parties
        The minimum number of survivors the calibration assumes.
    l1, l2
        L1 and L2 sensitivity of the summed integer vector.
    """

    epsilon: float
    delta: float
    sigma: float
    parties: int
    l1: float
    l2: float

    @classmethod
    def for_target(cls, epsilon: float, delta: float, parties: int, l1: float, l2: float) -> DistributedNoise:
        """Calibrate sigma with :func:`node_sigma` for ``parties`` guaranteed survivors.

        Parameters
        ----------
        epsilon, delta
            The target, ``epsilon > 0`` and ``0 < delta < 1``.
        parties
            The secure-aggregation threshold: the minimum number of survivors.
        l1, l2
            L1 and L2 sensitivity of the integer vector, ``l1 >= l2 > 0``.

        Returns
        -------
        DistributedNoise
            The calibrated settings.

        Raises
        ------
        ProtocolError
            If an argument is out of range (see :func:`node_sigma`).
        """
        sigma = node_sigma(epsilon=epsilon, delta=delta, parties=parties, l1=l1, l2=l2)
        return cls(
            epsilon=float(epsilon),
            delta=float(delta),
            sigma=sigma,
            parties=int(parties),
            l1=float(l1),
            l2=float(l2),
        )

    def achieved(self, survivors: int) -> float:
        """The epsilon, at ``delta``, actually reached when ``survivors`` nodes added noise.

        Parameters
        ----------
        survivors
            The number of nodes whose noise is in the sum, ``>= 1``.

        Returns
        -------
        float
            ``distributed_epsilon`` for ``survivors``; at most ``epsilon`` when
            ``survivors >= parties``, larger when fewer nodes survived.

        Raises
        ------
        ProtocolError
            If ``survivors`` is not an integer >= 1.
        """
        survivors = _check_count("survivors", survivors, "pass the number of nodes whose noise was summed")
        return distributed_epsilon(
            sigma=self.sigma, parties=survivors, l1=self.l1, l2=self.l2, delta=self.delta
        )
