"""Local evaluation returns sums that add up across nodes to the pooled figures."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from confide.learning import Dataset, EvaluationSums, build_model, evaluate, partition_iid  # noqa: E402


def _data(n: int = 90) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n), ("a", "b", "c"))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tabular.logistic", {"features": 4, "classes": 3})


def test_sums_match_a_direct_computation() -> None:
    data, model = _data(), _model()

    sums = evaluate(model, data)

    with torch.no_grad():
        logits = model(torch.from_numpy(np.array(data.x)))
        y = torch.from_numpy(np.array(data.y))
        loss = float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct = int((logits.argmax(1) == y).sum())
    assert sums.total == 90 and sums.correct == correct
    assert sums.loss_sum == pytest.approx(loss, rel=1e-5)
    assert sums.accuracy == correct / 90 and sums.mean_loss == pytest.approx(loss / 90, rel=1e-5)


def test_sums_over_parts_equal_the_pooled_sums_whatever_the_batch_size() -> None:
    data, model = _data(), _model()

    parts = [evaluate(model, p, batch_size=7) for p in partition_iid(data, 3, seed=0)]
    pooled = evaluate(model, data, batch_size=1000)

    total = parts[0] + parts[1] + parts[2]
    assert (total.correct, total.total) == (pooled.correct, pooled.total)
    assert total.loss_sum == pytest.approx(pooled.loss_sum, rel=1e-5)
    np.testing.assert_allclose(sum(p.as_vector() for p in parts), pooled.as_vector(), rtol=1e-5)


def test_an_empty_set_has_no_accuracy() -> None:
    sums = EvaluationSums(0, 0, 0.0)

    assert np.isnan(sums.accuracy) and np.isnan(sums.mean_loss)
