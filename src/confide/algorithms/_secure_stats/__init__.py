"""Statistics computed over secure aggregation: each node sends one dense vector, the sum is finalised.

Row data never leaves a node. Each statistic is three pure functions and pydantic models:

1. ``layout(params)``: the vector's length, the largest ``|element|`` one node can produce
   given ``max_rows`` (so the fixed-point encoder can prove it never overflows Z_2^64), the
   fixed-point scale, and the L1/L2 change one row can make (for noise calibration);
2. ``contribute(data, params)``, at every node over its own rows;
3. ``finalise(params, total, min_count=...)``, on the element-wise sum over nodes, which
   secure aggregation delivers exactly (fixed point in Z_2^64).

Every node contributes the same dense vector over the whole declared domain (every group
of the cartesian product of the :class:`GroupSpec` domains, every bin, in C order), so the
sum reveals nothing about which keys a node holds. A value outside a declared domain is
an error (the domain is the group structure); a value outside its declared bounds is
clipped to them, and nothing about it is reported: an error naming it, or how many there
are, would tell the researcher about single patients.

Sums of values are taken after shifting each column by the midpoint of its declared
bounds: ``|x - mid| <= halfwidth`` bounds every element (and so the fixed-point range) by
``max_rows * halfwidth^2`` rather than ``max_rows * max(|lo|, |hi|)^2``, and the variance
``(S2 - S1^2/n) / n`` then cancels only ``(mean - mid)^2 / var`` of its digits instead of
``mean^2 / var`` (brain volumes of ~1200 ml with a std of 60 would lose 2.6 of float64's
16 digits, and a lab value of ~1e6 with a std of 1e-3 all of them).

``min_count`` suppression happens in ``finalise``: it protects what is released from the
finalised statistic, not the summed vector itself, which the caller must not release.
Every count below ``min_count`` is withheld, zero included (an empty cell discloses as
much as a cell of one: "no patient of this group smokes"). This is small-cell suppression,
not differential privacy: a single withheld bin can be recovered from the total and the
others. The chi-square p-value lives in :mod:`confide.algorithms._stats_tests`.

The modules, in dependency order:

- ``_interface``: :class:`SecureStatistic`, the vector layout, a node's contribution,
  result tables, and the formatting of their cells
- ``_columns``: reading a node's table and its bounded numeric columns, shifted sums
- ``_groups``: :class:`GroupSpec`, group-by domains and each row's group
- ``_moments``, ``_histogram``, ``_crosstab``, ``_correlation``, ``_zscore``: one statistic each
- this package: the registry of statistics, :func:`get_statistic`
"""

from __future__ import annotations

from confide._errors import AlgorithmError
from confide.algorithms._result import ResultTable
from confide.algorithms._secure_stats._correlation import CORRELATION, CorrelationOutput, CorrelationParams
from confide.algorithms._secure_stats._crosstab import CROSSTAB, CrosstabOutput, CrosstabParams
from confide.algorithms._secure_stats._groups import GroupSpec
from confide.algorithms._secure_stats._histogram import (
    HISTOGRAM,
    GroupHistogram,
    HistogramBin,
    HistogramOutput,
    HistogramParams,
    OutOfRange,
    QuantileEstimate,
)
from confide.algorithms._secure_stats._interface import (
    Contribution,
    SecureStatistic,
    VectorLayout,
)
from confide.algorithms._secure_stats._moments import (
    MOMENTS,
    ColumnMoments,
    GroupMoments,
    MomentsOutput,
    MomentsParams,
)
from confide.algorithms._secure_stats._zscore import ZSCORE, ZScoreOutput, ZScoreParams

__all__ = [
    "CORRELATION",
    "CROSSTAB",
    "HISTOGRAM",
    "MOMENTS",
    "SECURE_STATISTICS",
    "ZSCORE",
    "ColumnMoments",
    "Contribution",
    "CorrelationOutput",
    "CorrelationParams",
    "CrosstabOutput",
    "CrosstabParams",
    "GroupHistogram",
    "GroupMoments",
    "GroupSpec",
    "HistogramBin",
    "HistogramOutput",
    "HistogramParams",
    "MomentsOutput",
    "MomentsParams",
    "OutOfRange",
    "QuantileEstimate",
    "ResultTable",
    "SecureStatistic",
    "VectorLayout",
    "ZScoreOutput",
    "ZScoreParams",
    "get_statistic",
]

SECURE_STATISTICS: tuple[SecureStatistic, ...] = (MOMENTS, HISTOGRAM, CROSSTAB, CORRELATION, ZSCORE)


def get_statistic(name: str) -> SecureStatistic:
    """The statistic called ``name``; :class:`AlgorithmError` lists the known ones."""
    for statistic in SECURE_STATISTICS:
        if statistic.name == name:
            return statistic
    known = ", ".join(s.name for s in SECURE_STATISTICS)
    raise AlgorithmError(f"unknown statistic {name!r}; known statistics: {known}")
