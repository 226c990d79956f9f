"""Fixed-point encoding: round trips, exact modular sums, and overflow refused up front."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from confide._errors import CryptoError
from confide.crypto._fixedpoint import FixedPoint, min_bits
from confide.crypto._prg import expand_mask


def _vectors(bound: float, parties: int, length: int) -> st.SearchStrategy[np.ndarray]:
    elements = st.floats(min_value=-bound, max_value=bound, allow_nan=False)
    return hnp.arrays(np.float64, (parties, length), elements=elements)


def test_encode_then_decode_round_trips_to_the_resolution() -> None:
    codec = FixedPoint(scale=2**20, bound=1e3, parties=1)
    values = np.array([0.0, 1.5, -1.5, 1e3, -1e3, 3.14159265, -2.0e-7])

    decoded = codec.decode(codec.encode(values))

    assert codec.encode(values).dtype == np.uint64
    np.testing.assert_allclose(decoded, values, rtol=0, atol=0.5 / codec.scale)


def test_negative_values_encode_as_twos_complement() -> None:
    codec = FixedPoint(scale=4, bound=10.0, parties=1)

    assert codec.encode([-1.0]).tolist() == [2**64 - 4]


@settings(max_examples=30, deadline=None)
@given(data=st.data(), parties=st.integers(min_value=1, max_value=8), bits=st.sampled_from([32, 64]))
def test_the_decoded_sum_is_the_plain_sum(data: st.DataObject, parties: int, bits: int) -> None:
    codec = FixedPoint(scale=2**10, bound=1e4, parties=parties, bits=bits)
    vectors = data.draw(_vectors(codec.bound, parties, 16))

    encoded = [codec.encode(vector) for vector in vectors]
    total = np.zeros(16, dtype=encoded[0].dtype)
    for vector in encoded:
        total += vector  # wraps mod 2**bits, as the protocol's sums do

    np.testing.assert_allclose(
        codec.decode(total), vectors.sum(axis=0), rtol=0, atol=parties * 0.5 / codec.scale
    )


def test_masks_cancel_and_leave_the_exact_sum() -> None:
    codec = FixedPoint(scale=2**16, bound=100.0, parties=2)
    a, b = np.array([1.25, -99.5, 3.0]), np.array([-0.25, 50.0, 100.0])
    mask = expand_mask(bytes(range(32)), 3)

    masked_a = codec.encode(a) + mask
    masked_b = codec.encode(b) - mask

    np.testing.assert_array_equal(codec.decode(masked_a + masked_b), a + b)


def test_a_widened_32_bit_sum_decodes_too() -> None:
    codec = FixedPoint(scale=2**8, bound=100.0, parties=3, bits=32)
    encoded = np.stack([codec.encode([-50.0, 2.5]) for _ in range(3)])

    total = encoded.sum(axis=0)  # numpy widens uint32 sums to uint64

    assert encoded.dtype == np.uint32 and total.dtype == np.uint64
    np.testing.assert_array_equal(codec.decode(total), [-150.0, 7.5])


def test_an_overflowing_configuration_is_refused_up_front() -> None:
    with pytest.raises(CryptoError, match=r"100 parties x bound 1000000.0 x scale 65536.*bits=64"):
        FixedPoint(scale=2**16, bound=1e6, parties=100, bits=32)
    with pytest.raises(CryptoError, match="2\\*\\*63"):
        FixedPoint(scale=2**40, bound=1e6, parties=100)


def test_the_limit_is_exact() -> None:
    FixedPoint(scale=1, bound=2.0**31 - 1, parties=1, bits=32)

    with pytest.raises(CryptoError, match="overflow"):
        FixedPoint(scale=1, bound=2.0**31, parties=1, bits=32)
    with pytest.raises(CryptoError, match="overflow"):
        FixedPoint(scale=2, bound=2.0**29, parties=2, bits=32)


def test_min_bits_picks_32_only_when_the_bound_allows() -> None:
    assert min_bits(scale=2**16, bound=100.0, parties=10) == 32
    assert min_bits(scale=2**16, bound=1e6, parties=100) == 64
    with pytest.raises(CryptoError, match="overflow"):
        min_bits(scale=2**40, bound=1e6, parties=100)


def test_values_outside_the_bound_are_refused_without_saying_how_many_or_how_large() -> None:
    codec = FixedPoint(scale=2**8, bound=10.0, parties=1)

    with pytest.raises(CryptoError, match="outside the declared bound") as refused:
        codec.encode([1.0, 20.0, -30.0, 10.0, np.nan])

    # the values are a node's data: neither they, nor how many there are, reach the message
    assert not any(text in str(refused.value) for text in ("30", "20", "3 of", "NaN"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0, "bound": 1.0, "parties": 1}, "positive integer"),
        ({"scale": 1, "bound": -1.0, "parties": 1}, "positive finite"),
        ({"scale": 1, "bound": float("inf"), "parties": 1}, "positive finite"),
        ({"scale": 1, "bound": 1.0, "parties": 0}, "at least one party"),
        ({"scale": 1, "bound": 1.0, "parties": 1, "bits": 16}, "32 or 64 bits"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        FixedPoint(**kwargs)  # type: ignore[arg-type]


def test_a_signed_or_float_sum_is_refused() -> None:
    codec = FixedPoint(scale=2, bound=1.0, parties=1)

    with pytest.raises(CryptoError, match="unsigned integer array, not float64"):
        codec.decode(np.array([1.0]))
