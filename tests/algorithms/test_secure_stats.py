"""Secure statistics: every node's vector, summed in float (standing in for secure aggregation),
finalises to what a plaintext computation over the pooled rows gives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from confide._errors import AlgorithmError, PolicyError
from confide.algorithms._secure_stats import (
    CORRELATION,
    CROSSTAB,
    HISTOGRAM,
    MOMENTS,
    SECURE_STATISTICS,
    ZSCORE,
    CorrelationOutput,
    CorrelationParams,
    CrosstabOutput,
    CrosstabParams,
    GroupSpec,
    HistogramOutput,
    HistogramParams,
    MomentsOutput,
    MomentsParams,
    SecureStatistic,
    ZScoreOutput,
    ZScoreParams,
    get_statistic,
)
from confide.algorithms._stats_tests import chi2_sf, chi_square_independence, regularized_gamma_q

AGE_EDGES = [20.0, 40.0, 60.0, 80.0, 90.0]
BOUNDS = {"hippocampus_ml": (3.0, 12.0), "brain_ml": (700.0, 1700.0), "age": (20.0, 90.0)}
SEX = GroupSpec(column="sex", categories=["F", "M"])
AGE = GroupSpec(column="age", bins=AGE_EDGES)
SMOKER = GroupSpec(column="smoker", categories=["never", "former", "current"])


class Tables:
    """An in-memory DataContext."""

    def __init__(self, **tables: pa.Table) -> None:
        self._tables = tables

    def table(self, name: str) -> pa.Table:
        return self._tables[name]

    min_count = 1

    def table_names(self) -> list[str]:
        return sorted(self._tables)


def hospital(index: int, rows: int) -> pa.Table:
    """Synthetic patients: volumes shrink (hippocampus) with age; smoking depends on sex."""
    rng = np.random.default_rng(7000 + index)
    age = rng.integers(20, 91, rows)
    female = rng.random(rows) < 0.52
    hippocampus = np.clip(8.2 - 0.022 * (age - 20) + rng.normal(0, 0.45, rows), 3, 12)
    brain = np.clip(1250 - 2.1 * (age - 20) + rng.normal(0, 60, rows) - 80 * female, 700, 1700)
    smoker = np.where(
        female,
        rng.choice(["never", "former", "current"], rows, p=[0.6, 0.25, 0.15]),
        rng.choice(["never", "former", "current"], rows, p=[0.45, 0.3, 0.25]),
    )
    return pa.table(
        {
            "age": pa.array(age, pa.int64()),
            "sex": np.where(female, "F", "M").tolist(),
            "smoker": smoker.tolist(),
            "hippocampus_ml": pa.array(np.round(hippocampus, 3), mask=rng.random(rows) < 0.05),
            "brain_ml": np.round(brain, 1),
        }
    )


NODES = [hospital(0, 400), hospital(1, 650), hospital(2, 250)]
POOLED = pa.concat_tables(NODES)


def aggregate(
    statistic: SecureStatistic, params: BaseModel, nodes: list[pa.Table], min_count: int = 0
) -> Any:
    layout = statistic.layout(params)
    total = np.zeros(layout.length)
    for table in nodes:
        contribution = statistic.contribute(Tables(patients=table), params)
        assert contribution.values.shape == (layout.length,)
        assert contribution.values.dtype == np.float64
        assert np.abs(contribution.values).max(initial=0.0) <= layout.bound
        total += contribution.values
    return statistic.finalise(params, total, min_count=min_count)


def column(name: str, table: pa.Table = POOLED) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def in_age_bin(age: np.ndarray, i: int) -> np.ndarray:
    lo, hi = AGE_EDGES[i], AGE_EDGES[i + 1]
    return (age >= lo) & ((age <= hi) if i == len(AGE_EDGES) - 2 else (age < hi))


def group_masks() -> list[np.ndarray]:
    """Pooled row masks of the sex x age groups, in C order."""
    sex = np.array(POOLED.column("sex").to_pylist())
    age = column("age")
    return [(sex == s) & in_age_bin(age, i) for s in ("F", "M") for i in range(len(AGE_EDGES) - 1)]


def moments_params(**overrides: Any) -> MomentsParams:
    fields: dict[str, Any] = {
        "table": "patients",
        "columns": ["hippocampus_ml", "brain_ml"],
        "bounds": BOUNDS,
        "group_by": [SEX, AGE],
    }
    return MomentsParams.model_validate({**fields, **overrides})


# -- stats.moments --------------------------------------------------------------------------------


def test_moments_per_group_equal_the_pooled_computation() -> None:
    out: MomentsOutput = aggregate(MOMENTS, moments_params(), NODES)

    assert [g.group for g in out.groups] == [
        {"sex": s, "age": a} for s in ("F", "M") for a in ("[20, 40)", "[40, 60)", "[60, 80)", "[80, 90]")
    ]
    for group, mask in zip(out.groups, group_masks(), strict=True):
        assert group.rows == int(mask.sum()) and not group.suppressed
        for name in ("hippocampus_ml", "brain_ml"):
            x = column(name)[mask]
            x = x[~np.isnan(x)]
            got = group.columns[name]
            assert got.count == x.size
            assert got.sum == pytest.approx(x.sum(), rel=1e-9)
            assert got.mean == pytest.approx(x.mean(), rel=1e-9)
            assert got.var_pop == pytest.approx(x.var(), rel=1e-9)
            assert got.var_sample == pytest.approx(x.var(ddof=1), rel=1e-9)
            assert got.std_pop == pytest.approx(x.std(), rel=1e-9)
            assert got.std_sample == pytest.approx(x.std(ddof=1), rel=1e-9)


def test_moments_without_groups_cover_all_rows_and_skip_nulls_per_column() -> None:
    out: MomentsOutput = aggregate(MOMENTS, moments_params(group_by=[]), NODES)

    (group,) = out.groups
    hippocampus = column("hippocampus_ml")
    assert group.group == {} and group.rows == POOLED.num_rows
    assert group.columns["brain_ml"].count == POOLED.num_rows
    assert group.columns["hippocampus_ml"].count == np.count_nonzero(~np.isnan(hippocampus))
    assert group.columns["hippocampus_ml"].mean == pytest.approx(np.nanmean(hippocampus), rel=1e-9)


def test_moments_suppress_groups_below_min_count() -> None:
    sizes = [int(m.sum()) for m in group_masks()]
    min_count = sorted(sizes)[2]

    out: MomentsOutput = aggregate(MOMENTS, moments_params(), NODES, min_count=min_count)

    for group, size in zip(out.groups, sizes, strict=True):
        assert group.suppressed == (size < min_count)
        if group.suppressed:
            assert group.rows is None
            assert all(c.suppressed and c.count is None and c.mean is None for c in group.columns.values())
        else:
            assert group.rows == size
    assert sum(g.suppressed for g in out.groups) == 2


def test_moments_suppress_a_column_with_too_few_values_in_a_shown_group() -> None:
    table = pa.table({"x": pa.array([1.0, 2.0, None, None, None]), "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    params = MomentsParams(table="patients", columns=["x", "y"], bounds={"x": (0, 10), "y": (0, 10)})

    out: MomentsOutput = aggregate(MOMENTS, params, [table], min_count=3)

    (group,) = out.groups
    assert group.rows == 5 and not group.suppressed
    assert group.columns["x"].suppressed and group.columns["x"].mean is None
    assert group.columns["y"].mean == pytest.approx(3.0)


def test_variance_keeps_its_digits_far_from_zero() -> None:
    # values ~1e6 with a spread of ~1e-3: unshifted sums of squares would lose every digit
    rng = np.random.default_rng(1)
    tables = [pa.table({"x": 1e6 + rng.normal(0, 1e-3, 500)}) for _ in range(3)]
    params = MomentsParams(table="patients", columns=["x"], bounds={"x": (1e6 - 1, 1e6 + 1)}, decimals=9)
    pooled = np.concatenate([column("x", t) for t in tables])

    out: MomentsOutput = aggregate(MOMENTS, params, tables)

    assert out.groups[0].columns["x"].var_sample == pytest.approx(pooled.var(ddof=1), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.floats(-50.0, 150.0, allow_nan=False), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=3),
)
def test_moments_of_any_split_equal_the_pooled_moments(data: list[float], cuts: list[int]) -> None:
    x = np.array(data)
    nodes = [pa.table({"x": part}) for part in np.split(x, sorted(c % (x.size + 1) for c in cuts))]
    params = MomentsParams(table="patients", columns=["x"], bounds={"x": (-50.0, 150.0)})

    got = aggregate(MOMENTS, params, nodes).groups[0].columns["x"]

    # Float64 bound (unit roundoff u, first order): the one-pass S2 - S1^2/n over k node sums
    # is off by at most (3(n + k) + 5) u S2, numpy's two-pass reference by (n + 3) u S2, where
    # S2 = sum((x - mid)^2). Near a variance of 0 (a constant column) that error is all there
    # is, and |sqrt(a) - sqrt(b)| <= sqrt(|a - b|) carries it to the std: about
    # |mean - mid| sqrt(u) ~ 1e-6 even if every sum were exact.
    n, k = x.size, len(nodes)
    centred_error = 4 * (n + k + 2) * 2.0**-53 * float(np.sum((x - 50.0) ** 2))
    assert got.count == n
    assert got.mean == pytest.approx(x.mean(), rel=1e-9, abs=1e-9 * 100)
    assert got.var_pop == pytest.approx(x.var(), rel=0, abs=centred_error / n)
    if n > 1:
        var_error = centred_error / (n - 1)
        assert got.var_sample == pytest.approx(x.var(ddof=1), rel=0, abs=var_error)
        assert got.std_sample == pytest.approx(x.std(ddof=1), rel=0, abs=math.sqrt(var_error))


def test_values_outside_the_bounds_are_clipped_to_them_and_nothing_about_them_is_reported() -> None:
    params = moments_params(bounds={**BOUNDS, "brain_ml": (700.0, 1200.0)}, group_by=[])
    brain = column("brain_ml")
    assert (brain > 1200).any()  # the attack: a bound that single patients exceed

    out: MomentsOutput = aggregate(MOMENTS, params, NODES)

    got = out.groups[0].columns["brain_ml"]
    clipped = np.clip(brain, 700.0, 1200.0)
    assert got.count == brain.size
    assert got.mean == pytest.approx(clipped.mean(), abs=1e-3)
    assert got.std_sample == pytest.approx(clipped.std(ddof=1), abs=1e-3)


def test_a_node_with_more_than_max_rows_refuses() -> None:
    with pytest.raises(AlgorithmError, match="may have more rows than max_rows=100"):
        MOMENTS.contribute(Tables(patients=NODES[0]), moments_params(max_rows=100))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"table": "visits"}, "no table 'visits'; it offers: patients"),
        ({"columns": ["height"], "bounds": {"height": (0, 1)}}, "no column 'height'; it has: age, sex"),
        (
            {"columns": ["smoker"], "bounds": {"smoker": (0, 1)}},
            "column 'smoker' of table 'patients' is string",
        ),
        ({"group_by": [GroupSpec(column="ward", categories=["A"])]}, "no column 'ward'"),
        ({"group_by": [GroupSpec(column="sex", bins=[0, 1])]}, "column 'sex' of table 'patients' is string"),
    ],
)
def test_missing_or_non_numeric_data_is_an_error_naming_it(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AlgorithmError, match=message):
        MOMENTS.contribute(Tables(patients=NODES[0]), moments_params(**overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"bounds": {**BOUNDS, "brain_ml": (1700.0, 700.0)}},
            "bounds of 'brain_ml' must be finite with lo < hi",
        ),
        ({"bounds": {**BOUNDS, "brain_ml": (0.0, math.inf)}}, "bounds of 'brain_ml' must be finite"),
        ({"bounds": {"brain_ml": (0.0, 1.0)}}, "column 'hippocampus_ml' has no bounds"),
        ({"columns": ["brain_ml", "brain_ml"]}, "columns names a column twice"),
        ({"group_by": [SEX, SEX]}, "group_by names a column twice"),
        ({"decimals": 10}, "decimals"),
        ({"extra": 1}, "extra"),
    ],
)
def test_moments_parameters_are_validated_with_clear_messages(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        moments_params(**overrides)


# -- groups ---------------------------------------------------------------------------------------


def test_group_specs_declare_exactly_one_strictly_increasing_domain() -> None:
    with pytest.raises(ValidationError, match="exactly one of categories or bins"):
        GroupSpec(column="age", categories=[1], bins=[0, 1])
    with pytest.raises(ValidationError, match="exactly one of categories or bins"):
        GroupSpec(column="age")
    with pytest.raises(ValidationError, match="strictly increasing"):
        GroupSpec(column="age", bins=[0, 10, 10])
    with pytest.raises(ValidationError, match="distinct"):
        GroupSpec(column="age", categories=[1, "1"])


def test_group_labels_close_the_last_bin_and_end_with_other() -> None:
    assert AGE.labels == ["[20, 40)", "[40, 60)", "[60, 80)", "[80, 90]"]
    assert GroupSpec(column="x", bins=[0, 0.5, 1], other=True).labels == ["[0, 0.5)", "[0.5, 1]", "other"]
    assert GroupSpec(column="x", categories=["a", 2]).labels == ["a", "2"]


def test_values_on_edges_fall_in_the_upper_bin_except_the_last_edge() -> None:
    table = pa.table({"age": [20, 39, 40, 89, 90], "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    params = MomentsParams(table="patients", columns=["x"], bounds={"x": (0, 10)}, group_by=[AGE])

    out: MomentsOutput = aggregate(MOMENTS, params, [table])

    assert [g.rows for g in out.groups] == [2, 1, 0, 2]


def test_a_group_value_outside_the_domain_is_an_error_naming_the_column_but_no_value_or_count() -> None:
    params = moments_params(group_by=[GroupSpec(column="smoker", categories=["never", "current"])])

    with pytest.raises(AlgorithmError, match=r"group column 'smoker' has values .* outside") as refused:
        MOMENTS.contribute(Tables(patients=NODES[0]), params)
    assert "former" not in str(refused.value) and "row(s)" not in str(refused.value)

    young = moments_params(group_by=[GroupSpec(column="age", bins=[30, 90])])
    with pytest.raises(
        AlgorithmError,
        match=r"group column 'age' has values \(or nulls\) outside its declared bins \[30, 90\]",
    ):
        MOMENTS.contribute(Tables(patients=NODES[0]), young)


def test_a_null_group_value_is_an_error_unless_other_collects_it() -> None:
    table = pa.table({"sex": ["F", None, "M", "X"], "x": [1.0, 2.0, 3.0, 4.0]})
    strict = MomentsParams(table="patients", columns=["x"], bounds={"x": (0, 10)}, group_by=[SEX])
    lenient = strict.model_copy(
        update={"group_by": [GroupSpec(column="sex", categories=["F", "M"], other=True)]}
    )

    with pytest.raises(AlgorithmError, match=r"group column 'sex' has values \(or nulls\) outside"):
        MOMENTS.contribute(Tables(patients=table), strict)
    out: MomentsOutput = aggregate(MOMENTS, lenient, [table])

    assert [(g.group["sex"], g.rows) for g in out.groups] == [("F", 1), ("M", 1), ("other", 2)]
    assert out.groups[2].columns["x"].mean == pytest.approx(3.0)


def test_integer_categories_match_integer_and_float_columns() -> None:
    spec = GroupSpec(column="ward", categories=[1, 2])
    tables = [
        pa.table({"ward": [1, 2, 2], "x": [1.0, 2.0, 3.0]}),
        pa.table({"ward": [1.0, 2.0], "x": [5.0, 6.0]}),
    ]
    params = MomentsParams(table="patients", columns=["x"], bounds={"x": (0, 10)}, group_by=[spec])

    out: MomentsOutput = aggregate(MOMENTS, params, tables)

    assert [g.rows for g in out.groups] == [2, 3]


# -- stats.histogram ------------------------------------------------------------------------------


def histogram_params(**overrides: Any) -> HistogramParams:
    fields: dict[str, Any] = {
        "table": "patients",
        "column": "brain_ml",
        "bins": [600, 800, 900, 1000, 1050, 1100, 1150, 1200, 1250, 1300, 1400, 1700],
        "quantiles": [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0],
        "group_by": [SEX],
    }
    return HistogramParams.model_validate({**fields, **overrides})


def test_histogram_counts_equal_the_pooled_counts_and_quantiles_lie_within_max_error() -> None:
    params = histogram_params()

    out: HistogramOutput = aggregate(HISTOGRAM, params, NODES)

    sex = np.array(POOLED.column("sex").to_pylist())
    for group in out.groups:
        x = column("brain_ml")[sex == group.group["sex"]]
        expected, _ = np.histogram(x, bins=params.bins)
        assert [b.count for b in group.bins] == expected.tolist()
        assert group.total == x.size
        for estimate in group.quantiles:
            exact = np.quantile(x, estimate.q, method="inverted_cdf")
            assert estimate.value is not None and estimate.max_error is not None
            assert abs(estimate.value - exact) <= estimate.max_error
        first = int(np.flatnonzero(expected)[0])
        assert group.quantiles[0].value == params.bins[first]  # the minimum's bin's lower edge


def test_histogram_suppresses_small_bins_and_small_groups() -> None:
    params = histogram_params(group_by=[GroupSpec(column="sex", categories=["F", "M", "X"])])
    counts = np.histogram(column("brain_ml")[np.array(POOLED.column("sex").to_pylist()) == "F"], params.bins)[
        0
    ]
    min_count = int(np.sort(counts[counts > 0])[1])

    out: HistogramOutput = aggregate(HISTOGRAM, params, NODES, min_count=min_count)

    female, _, nobody = out.groups
    assert [b.count for b in female.bins] == [None if c < min_count else c for c in counts]
    assert nobody.suppressed and nobody.total is None
    assert all(b.count is None for b in nobody.bins) and all(q.value is None for q in nobody.quantiles)


def test_histogram_values_outside_the_edges_are_counted_in_the_outer_bins() -> None:
    narrow = histogram_params(bins=[900, 1000, 1300], group_by=[])
    brain = column("brain_ml")

    out: HistogramOutput = aggregate(HISTOGRAM, narrow, NODES)

    assert [b.count for b in out.groups[0].bins] == [
        int(np.count_nonzero(brain < 1000)),
        int(np.count_nonzero(brain >= 1000)),
    ]
    # refusing instead would tell the researcher whether some patient's value lies outside
    with pytest.raises(ValidationError, match="out_of_range 'error' is no longer offered"):
        histogram_params(out_of_range="error")


def test_histogram_skips_nulls() -> None:
    params = histogram_params(column="hippocampus_ml", bins=[3, 6, 9, 12], group_by=[])

    out: HistogramOutput = aggregate(HISTOGRAM, params, NODES)

    assert out.groups[0].total == np.count_nonzero(~np.isnan(column("hippocampus_ml")))


def test_histogram_parameters_are_validated() -> None:
    with pytest.raises(ValidationError, match="strictly increasing"):
        histogram_params(bins=[1, 0])
    with pytest.raises(ValidationError, match="at least 2"):
        histogram_params(bins=[1])
    with pytest.raises(ValidationError, match="quantiles"):
        histogram_params(quantiles=[1.5])
    with pytest.raises(ValidationError, match="out_of_range"):
        histogram_params(out_of_range="wrap")


# -- stats.crosstab -------------------------------------------------------------------------------


def test_crosstab_and_chi_square_equal_the_pooled_computation() -> None:
    params = CrosstabParams(table="patients", rows=SEX, columns=SMOKER)

    out: CrosstabOutput = aggregate(CROSSTAB, params, NODES)

    sex = np.array(POOLED.column("sex").to_pylist())
    smoker = np.array(POOLED.column("smoker").to_pylist())
    observed = np.array([[np.sum((sex == r) & (smoker == c)) for c in SMOKER.labels] for r in SEX.labels])
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert out.row_labels == ["F", "M"] and out.column_labels == ["never", "former", "current"]
    assert out.counts == observed.tolist()
    assert out.row_totals == observed.sum(axis=1).tolist()
    assert out.column_totals == observed.sum(axis=0).tolist()
    assert out.total == POOLED.num_rows
    assert out.chi_square == pytest.approx(statistic, rel=1e-12)
    assert out.dof == 2
    assert out.p_value == pytest.approx(math.exp(-statistic / 2), rel=1e-12)  # chi2 with 2 dof
    assert out.note is None


def test_crosstab_suppresses_small_cells_and_then_withholds_the_chi_square() -> None:
    table = pa.table(
        {
            "sex": ["F"] * 30 + ["M"] * 28 + ["M"] * 2,
            "smoker": ["never"] * 30 + ["former"] * 28 + ["current"] * 2,
        }
    )
    params = CrosstabParams(table="patients", rows=SEX, columns=SMOKER)

    out: CrosstabOutput = aggregate(CROSSTAB, params, [table], min_count=5)

    assert out.counts == [[30, None, None], [None, 28, None]]
    assert out.column_totals == [30, 28, None] and out.total == 60
    assert out.chi_square is None and out.p_value is None and out.dof is None
    assert out.note is not None and "suppressed" in out.note


def test_crosstab_other_bucket_and_a_degenerate_table() -> None:
    rows = GroupSpec(column="sex", categories=["F"], other=True)
    params = CrosstabParams(table="patients", rows=rows, columns=SMOKER)

    out: CrosstabOutput = aggregate(CROSSTAB, params, NODES)
    only_women = aggregate(CROSSTAB, params, [NODES[0].filter(pa.compute.equal(NODES[0]["sex"], "F"))])

    males = np.array(POOLED.column("sex").to_pylist()) == "M"
    assert out.row_labels == ["F", "other"] and out.row_totals[1] == int(males.sum())
    assert only_women.chi_square is None and "two non-empty rows" in only_women.note


def test_crosstab_of_an_undeclared_category_names_the_column() -> None:
    params = CrosstabParams(table="patients", rows=GroupSpec(column="sex", categories=["F"]), columns=SMOKER)

    with pytest.raises(
        AlgorithmError, match=r"group column 'sex' has values \(or nulls\) outside its declared categories F"
    ):
        CROSSTAB.contribute(Tables(patients=NODES[0]), params)


@pytest.mark.parametrize(
    ("x", "dof", "expected"),
    [
        (3.84, 1, 0.0500435212),
        (5.99, 2, 0.0500366271),
        (10.0, 5, 0.0752352461),
        (0.0, 3, 1.0),
    ],
)
def test_chi_square_upper_tail_known_values(x: float, dof: int, expected: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(expected, rel=1e-5)


@given(x=st.floats(1e-6, 700.0), half_dof=st.integers(1, 40))
def test_chi_square_upper_tail_closed_forms(x: float, half_dof: int) -> None:
    # odd: sf(x, 1) = erfc(sqrt(x/2)); even: the Poisson tail exp(-x/2) sum_{i<k/2} (x/2)^i / i!
    poisson = math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(half_dof))

    assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10)
    assert chi2_sf(x, 2 * half_dof) == pytest.approx(poisson, rel=1e-10)


def test_incomplete_gamma_edges() -> None:
    assert regularized_gamma_q(3.0, 0.0) == 1.0
    assert regularized_gamma_q(3.0, math.inf) == 0.0
    assert regularized_gamma_q(5e5, 5e5) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="a > 0"):
        regularized_gamma_q(0.0, 1.0)
    with pytest.raises(ValueError, match="x >= 0"):
        regularized_gamma_q(1.0, -1.0)


def test_chi_square_of_a_table_with_an_empty_row_ignores_it() -> None:
    with_empty = chi_square_independence(np.array([[10.0, 20.0], [0.0, 0.0], [30.0, 5.0]]))
    without = chi_square_independence(np.array([[10.0, 20.0], [30.0, 5.0]]))

    assert with_empty == without and with_empty is not None and with_empty.dof == 1


# -- stats.correlation ----------------------------------------------------------------------------


def correlation_params(**overrides: Any) -> CorrelationParams:
    fields: dict[str, Any] = {
        "table": "patients",
        "columns": ["age", "hippocampus_ml", "brain_ml"],
        "bounds": BOUNDS,
    }
    return CorrelationParams.model_validate({**fields, **overrides})


def test_correlation_equals_the_pooled_covariance_and_pearson_correlation() -> None:
    out: CorrelationOutput = aggregate(CORRELATION, correlation_params(), NODES)

    x = np.column_stack([column(c) for c in ("age", "hippocampus_ml", "brain_ml")])
    x = x[~np.isnan(x).any(axis=1)]
    assert out.count == x.shape[0] and not out.suppressed
    assert out.means == pytest.approx(x.mean(axis=0).tolist(), rel=1e-9)
    np.testing.assert_allclose(np.array(out.covariance), np.cov(x, rowvar=False), rtol=1e-9)
    np.testing.assert_allclose(
        np.array(out.correlation, dtype=float), np.corrcoef(x, rowvar=False), rtol=1e-9
    )
    assert out.correlation is not None
    assert (out.correlation[0][1] or 0.0) < -0.5  # hippocampus shrinks with age


def test_correlation_is_suppressed_below_min_count_and_none_for_a_constant_column() -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    params = CorrelationParams(table="patients", columns=["a", "b"], bounds={"a": (0, 10), "b": (0, 10)})

    suppressed: CorrelationOutput = aggregate(CORRELATION, params, [table], min_count=4)
    shown: CorrelationOutput = aggregate(CORRELATION, params, [table], min_count=3)

    assert suppressed.suppressed and suppressed.count is None and suppressed.covariance is None
    assert shown.correlation == [[1.0, None], [None, None]]
    assert shown.covariance == [[1.0, 0.0], [0.0, 0.0]]


def test_correlation_parameters_are_validated() -> None:
    with pytest.raises(ValidationError, match="at least 2"):
        correlation_params(columns=["age"])
    with pytest.raises(ValidationError, match="has no bounds"):
        correlation_params(columns=["age", "weight"])


# -- stats.zscore ---------------------------------------------------------------------------------


def zscore_params(**overrides: Any) -> ZScoreParams:
    fields: dict[str, Any] = {
        "table": "patients",
        "column": "hippocampus_ml",
        "bounds": (3.0, 12.0),
        "value": 5.1,
        "group_by": [AGE, SEX],
        "group": {"age": 67, "sex": "M"},
    }
    return ZScoreParams.model_validate({**fields, **overrides})


def test_zscore_places_a_patient_in_the_distribution_of_his_age_group() -> None:
    out: ZScoreOutput = aggregate(ZSCORE, zscore_params(), NODES)

    age, sex = column("age"), np.array(POOLED.column("sex").to_pylist())
    x = column("hippocampus_ml")[in_age_bin(age, 2) & (sex == "M")]
    x = x[~np.isnan(x)]
    assert out.group == {"age": "[60, 80)", "sex": "M"}
    assert out.count == x.size and not out.suppressed
    assert out.mean == pytest.approx(x.mean(), rel=1e-9)
    assert out.std_pop == pytest.approx(x.std(), rel=1e-9)
    assert out.std_sample == pytest.approx(x.std(ddof=1), rel=1e-9)
    assert out.z == pytest.approx((5.1 - x.mean()) / x.std(ddof=1), rel=1e-9)
    assert out.z is not None and out.z < -2


def test_zscore_without_groups_uses_every_row_and_suppresses_small_counts() -> None:
    params = zscore_params(group_by=[], group={})
    x = column("hippocampus_ml")

    out: ZScoreOutput = aggregate(ZSCORE, params, NODES)
    hidden: ZScoreOutput = aggregate(ZSCORE, params, NODES, min_count=POOLED.num_rows)

    assert out.group == {} and out.count == np.count_nonzero(~np.isnan(x))
    assert out.z == pytest.approx((5.1 - np.nanmean(x)) / np.nanstd(x, ddof=1), rel=1e-9)
    assert hidden.suppressed and hidden.z is None and hidden.mean is None and hidden.count is None


def test_zscore_contributes_only_the_patients_group() -> None:
    contribution = ZSCORE.contribute(Tables(patients=NODES[0]), zscore_params())

    age, sex = column("age", NODES[0]), np.array(NODES[0].column("sex").to_pylist())
    x = column("hippocampus_ml", NODES[0])[in_age_bin(age, 2) & (sex == "M")]
    assert contribution.rows == np.count_nonzero(~np.isnan(x)) == contribution.values[0]


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"age": 67}, "exactly the group_by columns"),
        ({"age": 67, "sex": "M", "ward": "A"}, "exactly the group_by columns"),
        ({"age": 12, "sex": "M"}, r"group column 'age' has values \(or nulls\) outside its declared bins"),
        ({"age": 67, "sex": "U"}, r"group column 'sex' has values \(or nulls\) outside"),
    ],
)
def test_the_patients_group_must_lie_in_the_declared_domain(group: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        zscore_params(group=group)


# -- layouts: length, bound, sensitivity ----------------------------------------------------------

EXTREME_ROWS = 10  # a power of ten: a node refuses max_rows below the next one at or above its rows


def extreme_cases() -> list[tuple[SecureStatistic, BaseModel, pa.Table]]:
    """For each statistic: parameters with a small max_rows and max_rows rows at the bounds' extremes."""
    lo = pa.table(
        {
            "age": [20] * EXTREME_ROWS,
            "sex": ["F"] * EXTREME_ROWS,
            "smoker": ["never"] * EXTREME_ROWS,
            "hippocampus_ml": [3.0] * EXTREME_ROWS,
            "brain_ml": [700.0] * EXTREME_ROWS,
        }
    )
    hi = pa.table(
        {
            "age": [90] * EXTREME_ROWS,
            "sex": ["M"] * EXTREME_ROWS,
            "smoker": ["current"] * EXTREME_ROWS,
            "hippocampus_ml": [12.0] * EXTREME_ROWS,
            "brain_ml": [1700.0] * EXTREME_ROWS,
        }
    )
    cases: list[tuple[SecureStatistic, BaseModel, pa.Table]] = []
    for table in (lo, hi):
        cases += [
            (MOMENTS, moments_params(max_rows=EXTREME_ROWS), table),
            (HISTOGRAM, histogram_params(max_rows=EXTREME_ROWS), table),
            (
                CROSSTAB,
                CrosstabParams(table="patients", rows=SEX, columns=SMOKER, max_rows=EXTREME_ROWS),
                table,
            ),
            (CORRELATION, correlation_params(max_rows=EXTREME_ROWS), table),
            (ZSCORE, zscore_params(max_rows=EXTREME_ROWS, group_by=[], group={}), table),
        ]
    return cases


@pytest.mark.parametrize(("statistic", "params", "table"), extreme_cases())
def test_the_layout_bound_holds_for_max_rows_rows_at_the_extremes(
    statistic: SecureStatistic, params: BaseModel, table: pa.Table
) -> None:
    layout = statistic.layout(params)

    values = statistic.contribute(Tables(patients=table), params).values

    assert values.shape == (layout.length,)
    assert np.abs(values).max() <= layout.bound
    assert np.abs(values).max() >= layout.bound / 1.001  # and it is tight


@pytest.mark.parametrize(("statistic", "params", "table"), extreme_cases())
def test_one_row_changes_the_vector_by_at_most_the_sensitivity(
    statistic: SecureStatistic, params: BaseModel, table: pa.Table
) -> None:
    layout = statistic.layout(params)
    params = params.model_copy(update={"max_rows": 10 * EXTREME_ROWS})
    base = NODES[0].slice(0, EXTREME_ROWS)
    if statistic is CORRELATION:  # every column must be present for the row to count
        base = base.drop_null()

    without = statistic.contribute(Tables(patients=base), params).values
    with_row = statistic.contribute(
        Tables(patients=pa.concat_tables([base, table.slice(0, 1)])), params
    ).values

    assert np.abs(with_row - without).sum() <= layout.l1 * (1 + 1e-12)
    assert np.linalg.norm(with_row - without) <= layout.l2 * (1 + 1e-12)
    assert np.abs(with_row - without).sum() >= layout.l1 / 50  # not absurdly loose


def test_layout_scales_and_lengths() -> None:
    assert MOMENTS.layout(moments_params()).length == 2 * 4 * (1 + 3 * 2)
    assert MOMENTS.layout(moments_params(decimals=2)).scale == 100
    assert HISTOGRAM.layout(histogram_params()).scale == 1
    assert HISTOGRAM.layout(histogram_params()).length == 2 * 11
    assert CORRELATION.layout(correlation_params()).length == 1 + 3 + 6
    assert ZSCORE.layout(zscore_params()).length == 3


def test_a_layout_that_would_overflow_or_is_too_long_is_refused() -> None:
    with pytest.raises(AlgorithmError, match="overflows 64-bit fixed point"):
        MOMENTS.layout(moments_params(bounds={**BOUNDS, "brain_ml": (0.0, 1e9)}, decimals=9))
    wide = GroupSpec(column="age", bins=list(range(10_001)))
    with pytest.raises(AlgorithmError, match="more than 1000000"):
        MOMENTS.layout(
            moments_params(group_by=[wide, GroupSpec(column="sex", categories=list("ABCDEFGHIJKLMNOP"))])
        )


def test_finalise_refuses_a_vector_of_the_wrong_length() -> None:
    with pytest.raises(AlgorithmError, match="expected"):
        MOMENTS.finalise(moments_params(), np.zeros(3), min_count=0)


# -- registry and tables --------------------------------------------------------------------------


def test_every_statistic_is_registered_by_name() -> None:
    assert [s.name for s in SECURE_STATISTICS] == [
        "stats.moments",
        "stats.histogram",
        "stats.crosstab",
        "stats.correlation",
        "stats.zscore",
    ]
    assert get_statistic("stats.zscore") is ZSCORE
    with pytest.raises(AlgorithmError, match=r"known statistics: stats\.moments, stats\.histogram"):
        get_statistic("stats.median")


@pytest.mark.parametrize(
    ("statistic", "params"),
    [
        (MOMENTS, moments_params()),
        (HISTOGRAM, histogram_params()),
        (CROSSTAB, CrosstabParams(table="patients", rows=SEX, columns=SMOKER)),
        (CORRELATION, correlation_params()),
        (ZSCORE, zscore_params()),
    ],
)
def test_outputs_validate_and_print_as_tables(statistic: SecureStatistic, params: BaseModel) -> None:
    output = aggregate(statistic, params, NODES, min_count=10)

    dumped = output.model_dump(mode="json")
    assert statistic.output.model_validate(dumped) == output
    tables = statistic.tables(dumped)
    assert tables and tables == statistic.tables(output)
    assert all(len(row) == len(t.headers) for t in tables for row in t.rows)


def test_max_rows_answers_only_an_order_of_magnitude() -> None:
    # A search over max_rows would otherwise give the table's exact size (NODES[0] has fewer than 1,000).
    rows = Tables(patients=NODES[0]).table("patients").num_rows
    assert 100 < rows < 1000
    MOMENTS.contribute(Tables(patients=NODES[0]), moments_params(max_rows=1000))
    for near in (rows, rows + 1, 999):
        with pytest.raises(AlgorithmError, match="may have more rows"):
            MOMENTS.contribute(Tables(patients=NODES[0]), moments_params(max_rows=near))


def test_a_max_rows_below_ten_times_min_count_is_refused() -> None:
    with pytest.raises(PolicyError, match="below ten times"):
        MOMENTS.contribute(Tables(patients=NODES[0]), moments_params(max_rows=9))
