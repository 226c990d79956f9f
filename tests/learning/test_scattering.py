"""The scattering front end: filters, the transform's defining properties, and its caching."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from confide.learning import (  # noqa: E402
    Dataset,
    LocalTraining,
    Scattering2D,
    _frontend,
    _scattering,
    build_model,
    evaluate,
    train_locally,
)


@pytest.fixture(scope="module")
def scattering() -> Scattering2D:
    return Scattering2D((28, 28), J=2, L=8)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_wavelets_have_zero_mean_and_the_low_pass_keeps_the_mean(scattering: Scattering2D) -> None:
    psi = scattering.psi.numpy()

    assert np.abs(psi[:, 0, 0]).max() < 1e-6  # the DFT at frequency 0 is the filter's sum
    assert psi.max() == pytest.approx(1.0, abs=0.1)  # a band-pass peaking near 1
    # Each low-pass column sums to 1: a constant image keeps its value.
    np.testing.assert_allclose(scattering.rows.numpy().sum(axis=0), 1.0, atol=1e-5)


def test_output_has_81_maps_of_7x7_and_a_constant_image_has_no_wavelet_energy(
    scattering: Scattering2D,
) -> None:
    out = scattering(torch.full((2, 1, 28, 28), 0.7))

    assert scattering.channels == 81
    assert out.shape == (2, 81, 7, 7)
    torch.testing.assert_close(out[:, 0], torch.full((2, 7, 7), 0.7))  # order 0: the local mean
    assert out[:, 1:].abs().max() < 1e-4  # a flat image has no edges at any scale or angle


def test_low_pass_matrices_equal_filtering_by_fft_then_subsampling(scattering: Scattering2D) -> None:
    maps = torch.rand(3, 36, 36, dtype=torch.float64)
    phi = _scattering._gabor_hat((36, 36), 0.8 * 2, 0.0, 0.0, 1.0)

    by_fft = torch.fft.ifft2(torch.fft.fft2(maps) * torch.from_numpy(phi)).real[:, 4:32:4, 4:32:4]
    by_matrices = scattering.rows.double().T @ maps @ scattering.cols.double()

    torch.testing.assert_close(by_matrices, by_fft, rtol=1e-5, atol=1e-6)


def test_first_order_is_the_modulus_of_a_wavelet_convolution(scattering: Scattering2D) -> None:
    # A plane wave along one wavelet's direction and frequency lights up that wavelet's map most.
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float64)
    theta, xi = _scattering._angle(2, 8), 3 * math.pi / 4
    wave = np.cos(xi * (rows * math.cos(theta) + cols * math.sin(theta)))
    out = scattering(torch.from_numpy(wave).float()[None, None])

    first = out[0, 1:17].mean(dim=(1, 2))  # scale 0: maps 1..8, scale 1: maps 9..16
    assert int(first.argmax()) == 2


def test_small_shifts_change_the_features_little(scattering: Scattering2D) -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 8:20] = 1.0  # a bar, shifted one pixel below
    shifted = torch.roll(x, 1, dims=3)

    a, b = scattering(x), scattering(shifted)

    pixels = (x - shifted).norm() / x.norm()
    assert (a - b).norm() / a.norm() < 0.6 * pixels  # measured: 0.21 against 0.41


def test_wrong_input_shapes_are_refused(scattering: Scattering2D) -> None:
    with pytest.raises(ValueError, match=r"scattering expects \(batch, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        scattering(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="must be multiples of 2\\*\\*J = 4"):
        Scattering2D((30, 30))


def _image_set(n: int) -> Dataset:
    x = _images(n).numpy()
    y = (x[:, 0, :14].mean(axis=(1, 2)) > x[:, 0, 14:].mean(axis=(1, 2))).astype(np.int64)
    return Dataset(x, y, ("bottom", "top"))


def test_training_and_evaluation_run_the_transform_once_per_data_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _image_set(64)
    model = build_model("image.scatter28", {"classes": 2})
    calls: list[int] = []
    forward = Scattering2D.forward

    def counted(self: Scattering2D, x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(Scattering2D, "forward", counted)
    monkeypatch.setattr(_frontend, "_cache", type(_frontend._cache)())
    training = LocalTraining(steps=5, batch_size=16, learning_rate=0.5, noise_multiplier=1.0)

    first = train_locally(model, data, training, seed=1)
    train_locally(model, data, training, seed=2)
    evaluate(model, data)

    assert sum(calls) == 64  # once, for the three uses
    assert set(first.state) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert first.spent is not None and first.spent.steps == 5


def test_cached_features_equal_running_the_whole_model() -> None:
    data = _image_set(20)
    model = build_model("image.scatter28", {"classes": 2})
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.array(data.x)))
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.array(data.y)), reduction="sum")

    sums = evaluate(model, data, batch_size=7)

    assert sums.loss_sum == pytest.approx(float(expected), rel=1e-5)
    assert sums.correct == int((logits.argmax(dim=1) == torch.from_numpy(np.array(data.y))).sum())


def test_scatter28_learns_under_dp_sgd() -> None:
    data = _image_set(400)
    model = build_model("image.scatter28", {"classes": 2})
    torch.manual_seed(0)
    before = evaluate(model, data)

    train_locally(
        model,
        data,
        LocalTraining(
            steps=30, batch_size=100, learning_rate=2.0, momentum=0.9, clip_norm=0.1, noise_multiplier=0.5
        ),
        seed=0,
    )

    after = evaluate(model, data)
    assert after.mean_loss < before.mean_loss
    assert after.accuracy > 0.75  # from chance (0.5); measured 0.86
