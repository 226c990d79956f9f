"""Mask expansion: AES-256-CTR known answer, determinism, and pairwise seed agreement."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import CryptoError
from confide.crypto._prg import derive_pair_seed, expand_mask

seeds = st.binary(min_size=32, max_size=32)


def _aes_ecb_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def test_first_values_are_aes256_of_the_counter_blocks() -> None:
    key = bytes(32)
    # CTR keystream = E_k(0) || E_k(1) || ...; computed here block by block with ECB.
    blocks = _aes_ecb_block(key, bytes(16)) + _aes_ecb_block(key, (1).to_bytes(16, "big"))

    mask = expand_mask(key, 4)

    expected = [int.from_bytes(blocks[i : i + 8], "little") for i in range(0, 32, 8)]
    assert mask.tolist() == expected
    # The widely published AES-256 ciphertext of an all-zero block under an all-zero key.
    assert blocks[:16].hex() == "dc95c078a2408989ad48a21492842087"


def test_32_bit_masks_read_the_same_keystream_in_4_byte_words() -> None:
    seed = bytes(range(32))

    wide = expand_mask(seed, 8)
    narrow = expand_mask(seed, 16, bits=32)

    assert narrow.dtype == np.uint32 and wide.dtype == np.uint64
    assert narrow.tobytes() == wide.tobytes()


@settings(max_examples=30, deadline=None)
@given(seed=seeds, other=seeds, length=st.integers(min_value=1, max_value=64))
def test_same_seed_same_mask_and_different_seeds_differ(seed: bytes, other: bytes, length: int) -> None:
    first = expand_mask(seed, length)
    again = expand_mask(seed, length)
    different = expand_mask(other, length)

    assert np.array_equal(first, again)
    # 64 * length pseudorandom bits: equal masks from different keys would break AES.
    assert np.array_equal(first, different) == (seed == other)


def test_a_shorter_mask_is_a_prefix_of_a_longer_one() -> None:
    seed = bytes(range(32))

    assert np.array_equal(expand_mask(seed, 5), expand_mask(seed, 100)[:5])


def test_a_million_values_are_expanded_in_one_vectorised_call() -> None:
    mask = expand_mask(bytes(range(32)), 1_000_000)

    assert mask.shape == (1_000_000,) and mask.flags.writeable
    # Sanity only: the top bit of a uniform word is set about half the time.
    assert 0.49 < float(np.mean(mask >> np.uint64(63))) < 0.51


def test_zero_length_gives_an_empty_mask() -> None:
    assert expand_mask(bytes(32), 0).shape == (0,)


@pytest.mark.parametrize(
    ("seed", "length", "bits", "message"),
    [
        (bytes(16), 4, 64, "32 bytes, not 16"),
        (bytes(33), 4, 64, "32 bytes, not 33"),
        (bytes(32), -1, 64, "cannot be negative"),
        (bytes(32), 4, 16, "32 or 64 bits"),
    ],
)
def test_bad_arguments_are_refused(seed: bytes, length: int, bits: int, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        expand_mask(seed, length, bits=bits)


def test_both_ends_of_a_pair_derive_the_same_seed() -> None:
    alice, bob = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()

    at_alice = derive_pair_seed(alice, bob.public_key(), b"round-1")
    at_bob = derive_pair_seed(bob, alice.public_key(), b"round-1")

    assert at_alice == at_bob and len(at_alice) == 32


def test_the_context_separates_seeds() -> None:
    alice, bob = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()

    first = derive_pair_seed(alice, bob.public_key(), b"round-1")
    second = derive_pair_seed(alice, bob.public_key(), b"round-2")

    assert first != second


def test_a_low_order_peer_key_is_refused() -> None:
    low_order = x25519.X25519PublicKey.from_public_bytes(bytes(32))

    with pytest.raises(CryptoError, match="low-order"):
        derive_pair_seed(x25519.X25519PrivateKey.generate(), low_order, b"ctx")
