"""Mask expansion and pairwise mask seeds for secure aggregation.

Building block for the secure-sum protocol of DESIGN section 6 (Bonawitz et al.,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017). In
that protocol every client hides its fixed-point vector (:mod:`._fixedpoint`) under

- one *pairwise* mask per neighbour, ``PRG(s_uv)``, where the seed ``s_uv`` is agreed
  by X25519 between the two clients (:func:`derive_pair_seed`) and cancels in the sum
  because one of them adds it and the other subtracts it, and
- one *self* mask ``PRG(b_u)`` under a fresh random seed,

and Shamir-shares the seeds (:mod:`._shamir`) so the server can remove the masks of
clients that drop out. :func:`expand_mask` is the PRG: AES-256-CTR keyed with the
32-byte seed, as DESIGN section 4 requires ("masks come from AES-CTR keyed with 256-bit
secrets derived by X25519 + HKDF, never from a non-cryptographic generator").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from confide._errors import CryptoError

__all__ = ["PAIR_SEED_INFO", "SEED_SIZE", "MaskKey", "derive_pair_seed", "expand_mask"]

SEED_SIZE = 32
PAIR_SEED_INFO = b"confide-secagg-pair-v1"
_DTYPES: dict[int, np.dtype[np.unsignedinteger[Any]]] = {32: np.dtype("<u4"), 64: np.dtype("<u8")}
# The counter is the whole 128-bit block, so a key can produce 2**128 blocks before the
# keystream would wrap: far beyond any vector, so length needs no upper bound here.
_ZERO_COUNTER = bytes(16)


def expand_mask(seed: bytes, length: int, *, bits: int = 64) -> npt.NDArray[np.unsignedinteger[Any]]:
    """Expand a 32-byte seed into a pseudorandom mask over Z_(2^bits).

    The mask is the AES-256-CTR keystream under ``seed`` with an all-zero initial
    counter block, read as little-endian unsigned integers. A fixed nonce is safe
    because each seed keys exactly one mask (a pairwise seed is bound to one round
    through the HKDF context, a self-mask seed is drawn fresh per round); expanding
    the same seed twice gives the same mask, which is what lets the two ends of a
    pair, or the server recovering a dropped client, reproduce it.

    Parameters
    ----------
    seed
        The 256-bit AES key: a pairwise seed from :func:`derive_pair_seed` or a fresh
        self-mask seed from ``secrets.token_bytes(32)``.
    length
        Number of vector elements to produce (``>= 0``).
    bits
        Element width, 64 (``uint64``) or 32 (``uint32``); must match the fixed-point
        encoding the mask is added to.

    Returns
    -------
    numpy.ndarray
        A new, writable array of ``length`` values of dtype ``uint64`` or ``uint32``.

    Raises
    ------
    CryptoError
        If the seed is not 32 bytes, ``length`` is negative or ``bits`` is neither 32
        nor 64.
    """
    if len(seed) != SEED_SIZE:
        raise CryptoError(f"a mask seed is {SEED_SIZE} bytes, not {len(seed)}")
    if length < 0:
        raise CryptoError(f"a mask length cannot be negative, got {length}")
    dtype = _DTYPES.get(bits)
    if dtype is None:
        raise CryptoError(f"masks are 32 or 64 bits wide, not {bits}")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_COUNTER)).encryptor()
    size = length * dtype.itemsize
    # The keystream is written straight into a writable buffer (update_into wants 15
    # spare bytes), which the array then views: no copy of a mask that may be 32 MB.
    keystream = bytearray(size + 15)
    encryptor.update_into(bytes(size), keystream)
    return np.frombuffer(keystream, dtype=dtype, count=length).astype(dtype.newbyteorder("="), copy=False)


def derive_pair_seed(
    my_private: x25519.X25519PrivateKey, peer_public: x25519.X25519PublicKey, context: bytes
) -> bytes:
    """Derive the pairwise mask seed two parties share, without talking to each other.

    X25519 gives both parties the same shared secret; HKDF-SHA256 (no salt,
    info = ``b"confide-secagg-pair-v1" || context``) turns it into a uniform 32-byte
    key. The result is symmetric: ``derive_pair_seed(a, B, c) == derive_pair_seed(b, A, c)``.

    Parameters
    ----------
    my_private
        This party's X25519 private key (in Bonawitz et al. the round's ``s_u^SK``).
    peer_public
        The other party's X25519 public key.
    context
        Binds the seed to one use, so that no seed keys two masks: it should name the
        session, the round and the two parties (in an order both compute the same way).

    Returns
    -------
    bytes
        The 32-byte seed for :func:`expand_mask`.

    Raises
    ------
    CryptoError
        If the peer's key is a low-order point, so the agreement gives no secret.
    """
    try:
        shared = my_private.exchange(peer_public)
    except ValueError:
        raise CryptoError(
            "X25519 agreement with the peer's key gave the all-zero secret (a low-order point); "
            "refuse this peer's key"
        ) from None
    hkdf = HKDF(algorithm=hashes.SHA256(), length=SEED_SIZE, salt=None, info=PAIR_SEED_INFO + context)
    return hkdf.derive(shared)


@dataclass(frozen=True)
class MaskKey:
    """A fresh X25519 key pair for one round's pairwise masks (``s_u`` in Bonawitz et al.).

    It is separate from the party's long-term sealing key because the protocol may
    reveal it: when a party drops out after its neighbours masked with it, the survivors
    reconstruct this private key from Shamir shares so the server can cancel those masks.
    A key used for one round only reveals nothing about any other round.
    """

    private: bytes

    @classmethod
    def generate(cls) -> MaskKey:
        """A new key pair from the operating system's CSPRNG."""
        return cls(x25519.X25519PrivateKey.generate().private_bytes_raw())

    def __post_init__(self) -> None:
        if len(self.private) != SEED_SIZE:
            raise CryptoError(f"an X25519 private key is {SEED_SIZE} bytes, not {len(self.private)}")

    @property
    def public(self) -> bytes:
        """The 32-byte public key, to advertise (signed) to the neighbours."""
        return x25519.X25519PrivateKey.from_private_bytes(self.private).public_key().public_bytes_raw()

    def pair_seed(self, peer_public: bytes, context: bytes) -> bytes:
        """The seed shared with the holder of ``peer_public``; see :func:`derive_pair_seed`.

        Raises
        ------
        CryptoError
            If ``peer_public`` is not a 32-byte key or is a low-order point.
        """
        if len(peer_public) != SEED_SIZE:
            raise CryptoError(f"an X25519 public key is {SEED_SIZE} bytes, not {len(peer_public)}")
        mine = x25519.X25519PrivateKey.from_private_bytes(self.private)
        return derive_pair_seed(mine, x25519.X25519PublicKey.from_public_bytes(peer_public), context)
