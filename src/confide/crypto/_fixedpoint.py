"""Fixed-point encoding of real vectors into Z_(2^bits), so masked sums stay exact.

Building block for the secure-sum protocol of DESIGN section 6 (Bonawitz et al.,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
which sums vectors in Z_R): masks from :mod:`._prg` are uniform over Z_(2^bits) and
cancel only under modular arithmetic, so each party's floats are first scaled,
rounded and reduced mod 2^bits, and the unmasked sum is decoded as a two's-complement
integer divided by the scale.

The decoded sum is exact (up to each party's rounding error of at most 0.5/scale per
element) only if the true integer sum never leaves the signed range
[-2^(bits-1), 2^(bits-1)). That is why every value must lie in a *declared* bound, and
why :meth:`FixedPoint.check` refuses a configuration in which ``parties`` values of
magnitude ``bound`` could wrap around: a wrapped sum would decode to a plausible but
wrong number, silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import CryptoError

__all__ = ["FixedPoint", "min_bits"]

_SIGNED: dict[int, np.dtype[np.signedinteger[Any]]] = {32: np.dtype(np.int32), 64: np.dtype(np.int64)}
_UNSIGNED: dict[int, np.dtype[np.unsignedinteger[Any]]] = {32: np.dtype(np.uint32), 64: np.dtype(np.uint64)}


@dataclass(frozen=True)
class FixedPoint:
    """How ``parties`` vectors with elements in ``[-bound, bound]`` are encoded mod 2^bits.

    Parameters
    ----------
    scale
        Values are multiplied by ``scale`` and rounded: the resolution is ``1/scale``.
    bound
        The declared largest magnitude of any one element.
    parties
        The most vectors that will be summed.
    bits
        Width of the ring, 32 or 64; see :func:`min_bits`.

    Raises
    ------
    CryptoError
        On construction, if a parameter is out of range or the sum could overflow
        (see :meth:`check`).
    """

    scale: int
    bound: float
    parties: int
    bits: int = 64

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise CryptoError(f"the fixed-point scale must be a positive integer, not {self.scale}")
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise CryptoError(f"the fixed-point bound must be a positive finite number, not {self.bound}")
        if self.parties < 1:
            raise CryptoError(f"at least one party must contribute, not {self.parties}")
        if self.bits not in _UNSIGNED:
            raise CryptoError(f"fixed-point vectors are 32 or 64 bits wide, not {self.bits}")
        self.check()

    def check(self) -> None:
        """Refuse a configuration whose sum could leave the signed range of Z_(2^bits).

        Raises
        ------
        CryptoError
            If ``parties * bound * scale`` (with each element rounded up) reaches
            ``2**(bits - 1)``.
        """
        if self.parties * _largest_encoded(self.scale, self.bound) >= 2 ** (self.bits - 1):
            hint = "a smaller scale or bits=64" if self.bits == 32 else "a smaller scale or bound"
            raise CryptoError(
                f"fixed-point overflow: {self.parties} parties x bound {self.bound} x scale {self.scale} "
                f"can reach 2**{self.bits - 1}, beyond the signed range of a {self.bits}-bit sum; "
                f"use {hint}"
            )

    def encode(self, values: npt.ArrayLike) -> npt.NDArray[np.unsignedinteger[Any]]:
        """Scale, round and reduce ``values`` into Z_(2^bits).

        Parameters
        ----------
        values
            Real numbers of any shape, each within ``[-bound, bound]``.

        Returns
        -------
        numpy.ndarray
            ``round(v * scale) mod 2**bits`` with dtype ``uint64`` or ``uint32``, same shape.

        Raises
        ------
        CryptoError
            If any value lies outside ``[-bound, bound]`` or is not finite.
        """
        floats = np.asarray(values, dtype=np.float64)
        # Written so that NaN, which compares false with everything, counts as outside.
        outside = ~(np.abs(floats) <= self.bound)
        if outside.any():
            # No count and no magnitude: the values are a node's data (issue 15).
            raise CryptoError(
                f"values lie outside the declared bound [-{self.bound}, {self.bound}] or are not finite; "
                "clip them or declare a larger bound"
            )
        # check() guarantees |rint(v * scale)| < 2**(bits-1), so the signed casts are exact
        # and the unsigned view is the value mod 2**bits.
        integers = np.rint(floats * self.scale).astype(_SIGNED[self.bits])
        return integers.view(_UNSIGNED[self.bits])

    def decode(self, total: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Read a sum of at most ``parties`` encoded vectors back as real numbers.

        Parameters
        ----------
        total
            An unsigned integer array; it is reduced mod 2**bits first, so a sum that
            numpy widened (``np.sum`` of ``uint32`` gives ``uint64``) is accepted too.

        Returns
        -------
        numpy.ndarray
            The sum as ``float64``: the two's-complement value divided by ``scale``.

        Raises
        ------
        CryptoError
            If ``total`` is not an array of unsigned integers.
        """
        array = np.asarray(total)
        if array.dtype.kind != "u":
            raise CryptoError(
                f"a fixed-point sum is an unsigned integer array, not {array.dtype}; "
                "add the encoded vectors without converting them"
            )
        signed = array.astype(_UNSIGNED[self.bits]).view(_SIGNED[self.bits])
        return signed.astype(np.float64) / self.scale


def min_bits(scale: int, bound: float, parties: int) -> int:
    """The narrowest ring, 32 or 64 bits, in which ``parties`` bounded vectors sum safely.

    Parameters
    ----------
    scale, bound, parties
        As for :class:`FixedPoint`.

    Returns
    -------
    int
        32 when the worst-case sum fits in a signed 32-bit integer (half the traffic
        and mask expansion), else 64.

    Raises
    ------
    CryptoError
        If not even 64 bits suffice, or a parameter is out of range.
    """
    widest = FixedPoint(scale, bound, parties, 64)
    return 32 if widest.parties * _largest_encoded(scale, bound) < 2**31 else 64


def _largest_encoded(scale: int, bound: float) -> int:
    # The exact ceiling of bound * scale, and what float rounding of the product can
    # reach (above 2**53 the float may round past the ceiling): the larger one bounds
    # |rint(v * scale)| for every |v| <= bound.
    exact = math.ceil(Fraction(bound) * scale)
    rounded = float(np.rint(np.float64(bound) * scale))
    return max(exact, int(rounded)) if math.isfinite(rounded) else 2**1024
