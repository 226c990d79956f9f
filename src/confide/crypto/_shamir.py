"""Shamir t-of-n secret sharing of short byte strings (mask seeds, private keys).

Building block for the secure-sum protocol of DESIGN section 6 (Bonawitz et al.,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
section 3 and round 1 of the protocol): each client shares its self-mask seed ``b_u``
and its pairwise-agreement private key among the other clients, so that any ``t``
survivors let the server remove the masks of clients that dropped out, while fewer
than ``t`` colluders learn nothing about a secret.

The field is GF(p) with the Mersenne prime p = 2**521 - 1, so any secret of up to 64
bytes (512 bits) is one field element. A secret is the constant term of a random
polynomial of degree ``t - 1``; share ``i`` is the polynomial at ``x_i != 0``;
reconstruction is Lagrange interpolation at 0. Any ``t - 1`` shares are consistent with
every possible secret, with equal probability: the hiding is information-theoretic.

Python integers are not constant-time; shares are combined by whoever is entitled to
the secret, so timing reveals nothing that party is not about to learn anyway.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from confide._errors import CryptoError

__all__ = ["MAX_SECRET_SIZE", "PRIME", "SHARE_SIZE", "Share", "combine", "split"]

PRIME = 2**521 - 1
MAX_SECRET_SIZE = 64
_X_SIZE = 4
_Y_SIZE = (PRIME.bit_length() + 7) // 8
SHARE_SIZE = _X_SIZE + _Y_SIZE
_MAX_X = 2 ** (8 * _X_SIZE) - 1


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` of a sharing polynomial; ``x`` names the holder (1 .. 2**32-1)."""

    x: int
    y: int

    def to_bytes(self) -> bytes:
        """``x`` as 4 big-endian bytes, then ``y`` as 66: always :data:`SHARE_SIZE` bytes."""
        return self.x.to_bytes(_X_SIZE, "big") + self.y.to_bytes(_Y_SIZE, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse what :meth:`to_bytes` produced, checking that it is a valid point."""
        if len(data) != SHARE_SIZE:
            raise CryptoError(f"a Shamir share is {SHARE_SIZE} bytes, not {len(data)}")
        x = int.from_bytes(data[:_X_SIZE], "big")
        y = int.from_bytes(data[_X_SIZE:], "big")
        if x == 0:
            raise CryptoError("a Shamir share cannot have x = 0 (that point is the secret itself)")
        if y >= PRIME:
            raise CryptoError("a Shamir share's y is not a field element (it is >= 2**521 - 1)")
        return cls(x, y)


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Split ``secret`` into one share per ``x`` in ``xs``; any ``threshold`` of them recover it.

    Parameters
    ----------
    secret
        At most 64 bytes. Its length is not hidden by the shares' format; callers pass
        it to :func:`combine` (mask seeds and keys have a fixed length anyway).
    threshold
        ``t``: how many shares reconstruct, ``1 <= t <= len(xs)``. Fewer reveal nothing.
    xs
        Distinct, non-zero evaluation points, one per holder (e.g. party indices).

    Returns
    -------
    list[Share]
        The shares, in the order of ``xs``.

    Raises
    ------
    CryptoError
        If the secret is too long, the threshold is out of range, or an ``x`` is zero,
        repeated or does not fit in 32 bits.
    """
    if len(secret) > MAX_SECRET_SIZE:
        raise CryptoError(f"Shamir secrets are at most {MAX_SECRET_SIZE} bytes, not {len(secret)}")
    _check_xs(xs)
    if not 1 <= threshold <= len(xs):
        raise CryptoError(
            f"threshold {threshold} is impossible with {len(xs)} shares: it must be between 1 and {len(xs)}"
        )
    # The constant term is the secret; the others are uniform in GF(p) from the OS CSPRNG.
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [Share(x, _evaluate(coefficients, x)) for x in xs]


def combine(shares: Sequence[Share], length: int, *, threshold: int | None = None) -> bytes:
    """Recover a ``length``-byte secret from at least ``threshold`` shares.

    Parameters
    ----------
    shares
        Shares of one secret, from distinct holders, in any order. Extra shares beyond
        the threshold do no harm when they are genuine.
    length
        The secret's length in bytes (0 .. 64).
    threshold
        If given, fewer shares than this are refused up front. Without it, too few
        shares are usually caught because the interpolated value does not fit in
        ``length`` bytes, but for long secrets that check can miss (a 64-byte secret
        leaves only 9 spare bits), so callers that know ``t`` should pass it.

    Returns
    -------
    bytes
        The secret.

    Raises
    ------
    CryptoError
        If there are no or too few shares, two shares have the same ``x``, ``length``
        is out of range, or the shares do not interpolate to a ``length``-byte value
        (too few, or not shares of one secret).
    """
    if not 0 <= length <= MAX_SECRET_SIZE:
        raise CryptoError(f"Shamir secrets are 0 to {MAX_SECRET_SIZE} bytes long, not {length}")
    if not shares or (threshold is not None and len(shares) < threshold):
        raise CryptoError(
            f"too few shares to combine: got {len(shares)}, need {threshold or 'at least 1'}; "
            "wait for more holders to answer"
        )
    _check_xs([share.x for share in shares])
    value = _interpolate_at_zero(shares)
    if value.bit_length() > 8 * length:
        raise CryptoError(
            f"these {len(shares)} shares do not reconstruct a {length}-byte secret: "
            "there are fewer than the threshold, or they are not shares of the same secret"
        )
    return value.to_bytes(length, "big")


def _check_xs(xs: Sequence[int]) -> None:
    bad = [x for x in xs if not 1 <= x <= _MAX_X]
    if bad:
        raise CryptoError(f"share points must be between 1 and {_MAX_X} (x = 0 is the secret), got {bad}")
    if len(set(xs)) != len(xs):
        repeated = sorted({x for x in xs if xs.count(x) > 1})
        raise CryptoError(f"share points must be distinct, but {repeated} appear more than once")


def _evaluate(coefficients: list[int], x: int) -> int:
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result


def _interpolate_at_zero(shares: Sequence[Share]) -> int:
    # f(0) = sum_i y_i * prod_{j != i} x_j / (x_j - x_i); x's are distinct and < p,
    # so every denominator is invertible.
    total = 0
    for i, share in enumerate(shares):
        numerator, denominator = 1, 1
        for j, other in enumerate(shares):
            if j != i:
                numerator = numerator * other.x % PRIME
                denominator = denominator * (other.x - share.x) % PRIME
        total = (total + share.y * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total
