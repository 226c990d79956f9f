"""A fixed 2-D scattering transform: handcrafted image features for DP-SGD.

Tramer & Boneh 2021 ("Differentially private learning needs better features (or much more
data)") showed that a linear model on *scattering* features (Bruna & Mallat 2013; Oyallon
& Mallat 2015) beats end-to-end CNNs under DP-SGD on MNIST-like images: the features cost
no privacy (they depend on no data), and a linear model on them has few parameters, so the
noise that DP-SGD adds per parameter hurts less.

A scattering network of depth two with ``J`` scales and ``L`` orientations computes, for an
image ``x``, low-pass filter ``phi`` (a Gaussian of width ``0.8 * 2**(J-1)``) and Morlet
wavelets ``psi[j, l]`` (scale ``j < J``, angle ``l * pi / L``):

- order 0: ``x * phi``
- order 1: ``|x * psi[j1, l1]| * phi``                        (J L maps)
- order 2: ``||x * psi[j1, l1]| * psi[j2, l2]| * phi``, j2 > j1   (L**2 J (J-1) / 2 maps)

each subsampled by ``2**J``. For 28x28 images, ``J=2, L=8`` gives 81 maps of 7x7. The
wavelet convolutions are circular products in the Fourier domain, on the image padded by
reflection to hold ``2**J`` pixels of margin, which is cut away after subsampling. They are
taken at full resolution (Kymatio, the reference implementation, subsamples between orders,
which aliases a little: its features differ from these by up to 5 % of a channel's range);
the final low-pass and subsampling is one small matrix product on each side, since the
Gaussian is separable.

The module has no parameters: its filters are non-persistent buffers, so a model's state
dict (what nodes and coordinator exchange) holds only the trainable layers after it.
Being fixed, it is a :class:`~confide.learning._frontend.FixedTransform`: training and
evaluation run it once over a data set and keep the result, rather than in every step.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from confide.learning._frontend import FixedTransform

__all__ = ["Scattering2D"]

# Width of the Morlet envelope at scale 0, in pixels, and its central frequency, in radians
# per pixel (Oyallon & Mallat's choice, kept by later scattering work).
_SIGMA0 = 0.8
_XI0 = 3 * math.pi / 4


class Scattering2D(FixedTransform):
    """Depth-two scattering of ``(batch, 1, height, width)`` images into ``(batch, K, h, w)``.

    Parameters
    ----------
    shape : tuple of two ints
        Image height and width; both must be multiples of ``2**J``.
    J : int
        Scales; the output is subsampled by ``2**J``.
    L : int
        Orientations per scale.

    Attributes
    ----------
    channels : int
        ``K = 1 + J L + L**2 J (J - 1) / 2``: 81 for ``J=2, L=8``.
    out_shape : tuple of two ints
        ``(height / 2**J, width / 2**J)``.
    """

    psi: torch.Tensor  # (J L, H, W): the wavelets' spectra on the padded grid
    rows: torch.Tensor  # (H, h) and (W, w): low-pass and subsampling, see _low_pass_matrix
    cols: torch.Tensor

    def __init__(self, shape: tuple[int, int], J: int = 2, L: int = 8) -> None:
        super().__init__()
        height, width = shape
        if J < 1 or L < 1:
            raise ValueError(f"J and L must be at least 1, got J={J}, L={L}")
        step = 2**J
        if height % step or width % step or height < step or width < step:
            raise ValueError(f"image shape {shape} must be multiples of 2**J = {step}")
        self.shape, self.J, self.L = (height, width), J, L
        self._pad = step  # reflection margin on every side
        padded = (height + 2 * step, width + 2 * step)
        self.channels = 1 + J * L + L * L * J * (J - 1) // 2
        self.out_shape = (height // step, width // step)
        psi = np.stack(
            [
                _morlet_hat(padded, _SIGMA0 * 2**j, _angle(k, L), _XI0 / 2**j, 4 / L)
                for j in range(J)
                for k in range(L)
            ]
        )
        sigma_phi = _SIGMA0 * 2 ** (J - 1)
        self.register_buffer("psi", torch.from_numpy(psi.astype(np.float32)), persistent=False)
        rows, cols = (
            _low_pass_matrix(size, sigma_phi, step, out)
            for size, out in zip(padded, self.out_shape, strict=True)
        )
        self.register_buffer("rows", torch.from_numpy(rows.astype(np.float32)), persistent=False)
        self.register_buffer("cols", torch.from_numpy(cols.astype(np.float32)), persistent=False)

    def cache_key(self) -> tuple[object, ...]:
        return ("scattering2d", self.shape, self.J, self.L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.shape:
            want = f"(batch, 1, {self.shape[0]}, {self.shape[1]})"
            raise ValueError(f"scattering expects {want}, got {tuple(x.shape)}")
        p, J, L = self._pad, self.J, self.L
        padded = nn.functional.pad(x.float(), (p, p, p, p), mode="reflect")  # (B, 1, H, W)
        first = torch.fft.ifft2(torch.fft.fft2(padded) * self.psi).abs()  # (B, J L, H, W)
        # Order 2: every first-order map at scale j1 against every wavelet at a coarser scale.
        second = []
        for j1 in range(J - 1):
            spectra = torch.fft.fft2(first[:, j1 * L : (j1 + 1) * L, None])  # (B, L, 1, H, W)
            coarser = self.psi[(j1 + 1) * L :]  # (L (J - j1 - 1), H, W)
            second.append(torch.fft.ifft2(spectra * coarser).abs().flatten(1, 2))
        return self._low_pass(torch.cat([padded, first, *second], dim=1))

    def _low_pass(self, maps: torch.Tensor) -> torch.Tensor:
        # The Gaussian phi is separable, and only every 2**J-th output pixel inside the margin
        # is kept, so filtering and subsampling is one small matrix on each side.
        return self.rows.T @ maps @ self.cols


def _angle(k: int, L: int) -> float:
    """The k-th of L orientations, in the order Kymatio uses."""
    return (L // 2 - 1 - k) * math.pi / L


def _low_pass_matrix(size: int, sigma: float, step: int, out: int) -> npt.NDArray[np.float64]:
    """``(size, out)``: circular convolution with a periodised 1-D Gaussian, subsampled.

    Column i is the output pixel ``step * (i + 1)``: every ``step``-th after the margin.
    """
    d = np.arange(size, dtype=np.float64)
    offsets = d[:, None] + size * np.arange(-2, 3)  # the neighbouring periods, as in _gabor_hat
    g = np.exp(-(offsets**2) / (2 * sigma**2)).sum(axis=1) / (math.sqrt(2 * math.pi) * sigma)
    kept = step * np.arange(1, out + 1)
    matrix: npt.NDArray[np.float64] = g[(kept[None, :] - d[:, None]).astype(np.int64) % size]
    return matrix


def _gabor_hat(
    shape: tuple[int, int], sigma: float, theta: float, xi: float, slant: float
) -> npt.NDArray[np.float64]:
    """The DFT of a Gabor filter (an oriented Gaussian envelope times a plane wave), periodised.

    The filter is even up to conjugation, so its DFT is real; the imaginary part (rounding
    only) is dropped.
    """
    height, width = shape
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    curvature = rotation @ np.diag([1.0, slant**2]) @ rotation.T / (2 * sigma**2)
    spatial = np.zeros(shape, dtype=np.complex128)
    # Sum the copies of the envelope centred on neighbouring periods, so that the wide
    # low-pass filters wrap around the padded image as a circular convolution expects.
    for ex in (-2, -1, 0, 1, 2):
        for ey in (-2, -1, 0, 1, 2):
            grid = np.mgrid[ex * height : (ex + 1) * height, ey * width : (ey + 1) * width]
            xx, yy = grid.astype(np.float64)
            quadratic = curvature[0, 0] * xx**2 + 2 * curvature[0, 1] * xx * yy + curvature[1, 1] * yy**2
            spatial += np.exp(-quadratic + 1j * xi * (xx * c + yy * s))
    spatial /= 2 * math.pi * sigma**2 / slant
    spectrum: npt.NDArray[np.float64] = np.fft.fft2(spatial).real
    return spectrum


def _morlet_hat(
    shape: tuple[int, int], sigma: float, theta: float, xi: float, slant: float
) -> npt.NDArray[np.float64]:
    """The DFT of a Morlet wavelet: a Gabor filter minus its envelope, scaled to zero mean."""
    gabor = _gabor_hat(shape, sigma, theta, xi, slant)
    envelope = _gabor_hat(shape, sigma, theta, 0.0, slant)
    morlet: npt.NDArray[np.float64] = gabor - gabor[0, 0] / envelope[0, 0] * envelope
    return morlet
