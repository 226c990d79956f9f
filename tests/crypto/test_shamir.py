"""Shamir sharing: any t of n shares reconstruct, fewer do not, and bad input is refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import CryptoError
from confide.crypto._shamir import PRIME, SHARE_SIZE, Share, combine, split


@st.composite
def sharings(draw: st.DrawFn) -> tuple[bytes, int, list[int]]:
    secret = draw(st.binary(max_size=64))
    n = draw(st.integers(min_value=2, max_value=10))
    threshold = draw(st.integers(min_value=1, max_value=n))
    xs = draw(st.lists(st.integers(min_value=1, max_value=2**32 - 1), min_size=n, max_size=n, unique=True))
    return secret, threshold, xs


@settings(max_examples=40, deadline=None)
@given(sharing=sharings())
def test_any_threshold_subset_reconstructs_the_secret(sharing: tuple[bytes, int, list[int]]) -> None:
    secret, threshold, xs = sharing

    shares = split(secret, threshold, xs)

    for subset in itertools.combinations(shares, threshold):
        assert combine(subset, len(secret), threshold=threshold) == secret
    assert combine(shares, len(secret)) == secret


@settings(max_examples=20, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64), n=st.integers(min_value=2, max_value=10), data=st.data())
def test_fewer_than_threshold_shares_do_not_give_the_secret(
    secret: bytes, n: int, data: st.DataObject
) -> None:
    # A sanity check only: it shows t-1 shares do not *reconstruct* the secret, not that
    # they hide it. Hiding is information-theoretic (every secret is equally consistent
    # with t-1 shares) and follows from the algebra, not from any finite sample.
    threshold = data.draw(st.integers(min_value=2, max_value=n))
    shares = split(secret, threshold, range(1, n + 1))

    try:
        recovered = combine(shares[: threshold - 1], len(secret))
    except CryptoError:
        return  # the usual outcome: the interpolated value does not fit in len(secret) bytes
    assert recovered != secret


def test_a_threshold_of_one_puts_the_secret_in_every_share() -> None:
    shares = split(b"seed", 1, [3, 7])

    assert {share.y for share in shares} == {int.from_bytes(b"seed", "big")}


def test_leading_zero_bytes_survive() -> None:
    secret = b"\x00\x00\x01" + bytes(29)

    assert combine(split(secret, 2, [1, 2, 3])[1:], 32) == secret


def test_shares_round_trip_through_fixed_width_bytes() -> None:
    shares = split(bytes(range(64)), 3, [1, 2, 2**32 - 1])

    encoded = [share.to_bytes() for share in shares]

    assert all(len(raw) == SHARE_SIZE == 70 for raw in encoded)
    assert [Share.from_bytes(raw) for raw in encoded] == shares


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes(69), "70 bytes, not 69"),
        (bytes(4) + (1).to_bytes(66, "big"), "x = 0"),
        ((1).to_bytes(4, "big") + PRIME.to_bytes(66, "big"), "not a field element"),
    ],
)
def test_malformed_share_bytes_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        Share.from_bytes(raw)


@pytest.mark.parametrize(
    ("secret", "threshold", "xs", "message"),
    [
        (b"s", 0, [1, 2], "between 1 and 2"),
        (b"s", 3, [1, 2], "between 1 and 2"),
        (b"s", 2, [0, 1, 2], r"x = 0 is the secret"),
        (b"s", 2, [1, 2, 2], r"distinct, but \[2\]"),
        (b"s", 2, [1, 2**32], "between 1 and"),
        (bytes(65), 2, [1, 2], "at most 64 bytes, not 65"),
    ],
)
def test_bad_split_arguments_are_refused(secret: bytes, threshold: int, xs: list[int], message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        split(secret, threshold, xs)


def test_too_few_shares_are_refused_when_the_threshold_is_known() -> None:
    shares = split(b"seed", 3, [1, 2, 3])

    with pytest.raises(CryptoError, match="too few shares to combine: got 2, need 3"):
        combine(shares[:2], 4, threshold=3)
    with pytest.raises(CryptoError, match="too few shares"):
        combine([], 4)


def test_duplicate_shares_are_refused() -> None:
    shares = split(b"seed", 2, [1, 2])

    with pytest.raises(CryptoError, match="distinct"):
        combine([shares[0], shares[0]], 4)


def test_shares_of_different_secrets_do_not_combine() -> None:
    first = split(bytes(32), 2, [1, 2])
    second = split(b"\xff" * 32, 2, [1, 2])

    with pytest.raises(CryptoError, match="do not reconstruct a 32-byte secret"):
        combine([first[0], second[1]], 32)


def test_an_impossible_length_is_refused() -> None:
    with pytest.raises(CryptoError, match="0 to 64 bytes"):
        combine(split(b"s", 1, [1]), 65)
