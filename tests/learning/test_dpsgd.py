"""Local training: DP-SGD with Opacus lowers the loss, meets its epsilon, and is seeded; plain SGD too."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from pydantic import ValidationError  # noqa: E402

from confide.learning import (  # noqa: E402
    Dataset,
    LocalTraining,
    build_model,
    epsilon_spent,
    evaluate,
    noise_multiplier_for,
    train_locally,
)

DELTA = 1e-5


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("image.cnn28")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_dp_sgd_lowers_the_loss_on_a_mnist_slice(mnist_1k: Dataset) -> None:
    model = _model()
    before = evaluate(model, mnist_1k).mean_loss
    sigma = noise_multiplier_for(8.0, DELTA, sample_rate=0.25, steps=12)
    training = LocalTraining(
        steps=12, batch_size=250, learning_rate=2.0, clip_norm=1.0, noise_multiplier=sigma
    )

    update = train_locally(model, mnist_1k, training, seed=0)
    after = evaluate(model, mnist_1k).mean_loss

    assert after < before - 0.3
    assert update.samples > 0 and math.isfinite(update.mean_loss)
    assert update.spent is not None and update.spent.steps == 12 and update.spent.sample_rate == 0.25


def test_epsilon_after_training_meets_the_target_closely(mnist_1k: Dataset) -> None:
    rounds, steps, batch = 3, 2, 100
    q = batch / len(mnist_1k)
    sigma = noise_multiplier_for(2.0, DELTA, sample_rate=q, steps=rounds * steps)
    training = LocalTraining(steps=steps, batch_size=batch, learning_rate=0.5, noise_multiplier=sigma)
    model = _model()

    history = [train_locally(model, mnist_1k.head(1000), training, seed=r).spent for r in range(rounds)]

    assert all(h is not None for h in history)
    spent = epsilon_spent([h for h in history if h is not None], DELTA)
    assert 2.0 * 0.99 <= spent <= 2.0


def test_a_seed_fixes_batches_and_noise(mnist_1k: Dataset) -> None:
    training = LocalTraining(steps=3, batch_size=100, learning_rate=1.0, noise_multiplier=1.0)
    data = mnist_1k.head(300)

    a = train_locally(_model(), data, training, seed=5)
    b = train_locally(_model(), data, training, seed=5)
    c = train_locally(_model(), data, training, seed=6)

    assert _same(a.state, b.state) and a.mean_loss == b.mean_loss
    assert not _same(a.state, c.state)


def test_without_a_seed_the_noise_differs(mnist_1k: Dataset) -> None:
    training = LocalTraining(steps=1, batch_size=100, learning_rate=1.0, noise_multiplier=1.0)

    a = train_locally(_model(), mnist_1k.head(200), training)
    b = train_locally(_model(), mnist_1k.head(200), training)

    assert not _same(a.state, b.state)


def test_infinite_epsilon_trains_plain_sgd(mnist_1k: Dataset) -> None:
    sigma = noise_multiplier_for(math.inf, DELTA, sample_rate=0.25, steps=12)
    training = LocalTraining(steps=12, batch_size=250, learning_rate=0.5, noise_multiplier=sigma)
    model = _model()
    before = evaluate(model, mnist_1k).mean_loss

    update = train_locally(model, mnist_1k, training, seed=0)

    assert sigma is None and update.spent is None
    assert evaluate(model, mnist_1k).mean_loss < before - 0.3
    assert _same(update.state, train_locally(_model(), mnist_1k, training, seed=0).state)


def test_training_leaves_a_plain_module_behind(mnist_1k: Dataset) -> None:
    model = _model()
    training = LocalTraining(steps=1, batch_size=50, learning_rate=0.1, noise_multiplier=1.0)

    train_locally(model, mnist_1k.head(100), training, seed=0)

    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert type(model) is torch.nn.Sequential


def test_an_empty_poisson_batch_still_adds_noise(mnist_1k: Dataset) -> None:
    # q = 0.1 on 10 samples: about a third of the draws are empty; the step (noise only) must
    # still happen, as the privacy analysis assumes.
    data = mnist_1k.head(10)
    training = LocalTraining(steps=1, batch_size=1, learning_rate=0.1, noise_multiplier=1.0)
    for seed in range(50):
        model = _model()
        start = {k: v.clone() for k, v in model.state_dict().items()}
        update = train_locally(model, data, training, seed=seed)
        if update.samples == 0:
            break
    else:
        pytest.fail("no empty batch in 50 seeds")

    assert not _same(start, update.state)
    assert math.isnan(update.mean_loss)


def test_the_returned_weights_are_copies(mnist_1k: Dataset) -> None:
    model = _model()
    update = train_locally(
        model, mnist_1k.head(50), LocalTraining(steps=1, batch_size=50, learning_rate=0.1), seed=0
    )

    with torch.no_grad():
        next(model.parameters()).zero_()

    assert float(update.state["0.weight"].abs().sum()) > 0


@pytest.mark.parametrize(
    "settings",
    [
        {"steps": 0, "batch_size": 10, "learning_rate": 0.1},
        {"steps": 1, "batch_size": 10, "learning_rate": -1.0},
        {"steps": 1, "batch_size": 10, "learning_rate": 0.1, "noise_multiplier": 0.0},
        {"steps": 1, "batch_size": 10, "learning_rate": 0.1, "optimizer": "adam"},
    ],
)
def test_training_settings_are_validated(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LocalTraining.model_validate(settings)


def test_sample_rate_is_capped_at_one() -> None:
    training = LocalTraining(steps=1, batch_size=500, learning_rate=0.1, noise_multiplier=1.0)

    assert training.sample_rate(100) == 1.0 and training.sample_rate(1000) == 0.5


def test_tabular_models_train_with_secure_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    data = Dataset(x, (x[:, 0] > 0).astype(np.int64), ("neg", "pos"))
    torch.manual_seed(0)
    model = build_model("tabular.logistic", {"features": 5, "classes": 2})
    before = evaluate(model, data).mean_loss
    training = LocalTraining(
        steps=20, batch_size=50, learning_rate=1.0, noise_multiplier=0.5, secure_noise=True
    )

    update = train_locally(model, data, training, seed=0)

    assert update.spent is not None and update.spent.sample_rate == 0.25
    assert evaluate(model, data).mean_loss < before
