"""Classical test statistics for finalised aggregates: Pearson's chi-square test of independence.

The researcher's side of ``stats.crosstab`` (:mod:`confide.algorithms._secure_stats`) turns a
summed contingency table into a chi-square statistic and its p-value. The p-value is the
chi-square upper tail ``Q(k/2, x/2)``, the regularised upper incomplete gamma function,
computed with the standard library only (no SciPy on nodes or researchers' machines):

- for ``x < a + 1`` the power series of the lower function ``P(a, x)`` converges fast and
  ``Q = 1 - P`` (there ``Q`` is not small, so the subtraction loses nothing);
- otherwise Legendre's continued fraction for ``Q`` itself, evaluated by the modified Lentz
  method, which keeps full relative precision far out in the tail.

Both follow Press et al., *Numerical Recipes* (3rd ed.), section 6.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ChiSquareTest", "chi2_sf", "chi_square_independence", "regularized_gamma_q"]

_EPS = 1e-15
_TINY = 1e-300


def regularized_gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function ``Q(a, x) = Γ(a, x) / Γ(a)``.

    Parameters
    ----------
    a : float
        Shape, ``a > 0``.
    x : float
        Lower limit of the integral, ``x >= 0``.

    Returns
    -------
    float
        ``Q(a, x)`` in [0, 1]; ``Q(a, 0) = 1``.

    Raises
    ------
    ValueError
        If ``a <= 0``, ``x < 0`` or either is NaN.
    """
    if not a > 0 or math.isinf(a):
        raise ValueError(f"the incomplete gamma function needs a finite a > 0, not {a}")
    if not x >= 0:
        raise ValueError(f"the incomplete gamma function needs x >= 0, not {x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1:
        return max(0.0, 1.0 - _lower_series(a, x))
    return _upper_continued_fraction(a, x)


def chi2_sf(x: float, dof: float) -> float:
    """Upper tail ``P(X >= x)`` of the chi-square distribution with ``dof`` degrees of freedom."""
    if x <= 0:
        return 1.0
    return regularized_gamma_q(dof / 2.0, x / 2.0)


def _max_iterations(a: float) -> int:
    # Both expansions need O(sqrt(a)) terms when x is near a (the hard case); this is ample.
    return 1000 + 20 * math.isqrt(int(a) + 1)


def _prefactor(a: float, x: float) -> float:
    # x^a e^-x / Γ(a), in logs so that large a and x do not overflow
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _lower_series(a: float, x: float) -> float:
    # P(a, x) = x^a e^-x / Γ(a+1) * sum_n x^n / ((a+1)...(a+n))
    denominator = a
    term = 1.0 / a
    total = term
    for _ in range(_max_iterations(a)):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * _prefactor(a, x)
    raise ArithmeticError(f"incomplete gamma series did not converge for a={a}, x={x}")


def _upper_continued_fraction(a: float, x: float) -> float:
    # Q(a, x) = x^a e^-x / Γ(a) * 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- ...)))
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    fraction = d
    for i in range(1, _max_iterations(a)):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        fraction *= delta
        if abs(delta - 1.0) < _EPS:
            return fraction * _prefactor(a, x)
    raise ArithmeticError(f"incomplete gamma continued fraction did not converge for a={a}, x={x}")


@dataclass(frozen=True)
class ChiSquareTest:
    """Pearson's chi-square test of independence on a contingency table.

    Attributes
    ----------
    statistic : float
        ``sum (observed - expected)^2 / expected`` over the non-empty rows and columns.
    dof : int
        ``(rows - 1) * (columns - 1)``, counting only non-empty rows and columns.
    p_value : float
        Upper tail of the chi-square distribution with ``dof`` degrees of freedom.
    min_expected : float
        Smallest expected count; below 5 the chi-square approximation is doubtful.
    """

    statistic: float
    dof: int
    p_value: float
    min_expected: float


def chi_square_independence(counts: npt.NDArray[np.float64]) -> ChiSquareTest | None:
    """Chi-square test of independence of a two-way table of counts.

    Rows and columns whose total is zero carry no information and have no expected count,
    so they are left out (and do not count towards the degrees of freedom).

    Parameters
    ----------
    counts : numpy.ndarray
        Non-negative counts, shape ``(rows, columns)``.

    Returns
    -------
    ChiSquareTest or None
        None when fewer than two rows or two columns are non-empty: then there is nothing
        to test.
    """
    table = np.asarray(counts, dtype=np.float64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.ndim != 2 or min(table.shape) < 2:
        return None
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return ChiSquareTest(
        statistic=statistic,
        dof=dof,
        p_value=chi2_sf(statistic, dof),
        min_expected=float(expected.min()),
    )
