"""Model weights in safe formats only: safetensors bytes and a flat float32 vector.

Weights cross the network between the researcher's coordinator and the nodes, so they
are never pickled and never read with ``torch.load`` (which unpickles, and so runs code
chosen by whoever wrote the file). Two formats:

- **safetensors** bytes (a JSON header of names, dtypes and shapes, then raw little-endian
  tensors): for sending a whole model, e.g. the global model in each round;
- a **flat float32 vector** over the model's ``state_dict`` in its order: what a node
  feeds into secure aggregation (fixed-point encoded there), and what the coordinator
  turns back into a ``state_dict`` after summing.

Whatever arrives is checked against the model it is meant for (the same names, shapes
and dtype, all values finite) before anything is loaded into it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_safetensors
from safetensors.torch import save as _save_safetensors
from torch import nn

from confide._errors import AlgorithmError, WireError

__all__ = ["StateDict", "flatten", "from_safetensors", "to_safetensors", "unflatten", "vector_length"]

StateDict = dict[str, torch.Tensor]


def to_safetensors(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a ``state_dict`` as safetensors bytes (tensors made contiguous, on the CPU)."""
    return _save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()})


def from_safetensors(data: bytes, like: nn.Module) -> StateDict:
    """Decode safetensors ``data`` into a ``state_dict`` that fits ``like``.

    Parameters
    ----------
    data : bytes
        A safetensors file's bytes, e.g. as received from a peer.
    like : torch.nn.Module
        The model the weights are meant for; names, shapes and dtypes must match its
        ``state_dict`` exactly.

    Returns
    -------
    dict of str to torch.Tensor
        In ``like``'s order, ready for ``like.load_state_dict``.

    Raises
    ------
    WireError
        ``data`` is not a safetensors file.
    AlgorithmError
        The weights do not fit ``like`` or hold non-finite values.
    """
    try:
        state = _load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise WireError(f"model weights are not a valid safetensors file ({_first_line(exc)})") from None
    expected = like.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise AlgorithmError(
            f"model weights do not fit the model: missing {missing or 'nothing'}, unexpected "
            f"{extra or 'nothing'}; were they written for another architecture or configuration?"
        )
    for name, ref in expected.items():
        got = state[name]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise AlgorithmError(
                f"model weights do not fit the model: {name} is {got.dtype} {tuple(got.shape)}, "
                f"the model needs {ref.dtype} {tuple(ref.shape)}"
            )
        _check_finite(name, got)
    return {name: state[name] for name in expected}


def vector_length(like: nn.Module) -> int:
    """Length of the flat vector of ``like``'s ``state_dict`` (see :func:`flatten`)."""
    return sum(t.numel() for t in like.state_dict().values())


def flatten(state: Mapping[str, torch.Tensor]) -> npt.NDArray[np.float32]:
    """Concatenate a ``state_dict``'s tensors, in its order, into one float32 vector.

    Raises
    ------
    AlgorithmError
        A tensor is not floating point (integer buffers cannot be averaged).
    """
    parts = []
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise AlgorithmError(f"cannot flatten {name}: it is {tensor.dtype}, not a floating-point tensor")
        parts.append(tensor.detach().cpu().reshape(-1).to(torch.float32))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(parts).numpy().copy()


def unflatten(vector: npt.ArrayLike, like: nn.Module) -> StateDict:
    """Cut a flat vector back into a ``state_dict`` shaped like ``like``'s.

    Parameters
    ----------
    vector : array_like
        One-dimensional, of length :func:`vector_length` (``like``), finite.
    like : torch.nn.Module
        Gives the names, order, shapes and dtypes.

    Returns
    -------
    dict of str to torch.Tensor
        Fresh tensors (not views of ``vector``), ready for ``like.load_state_dict``.

    Raises
    ------
    AlgorithmError
        Wrong dimension, length, or non-finite values.
    """
    flat = np.asarray(vector)
    expected = vector_length(like)
    if flat.ndim != 1 or flat.shape[0] != expected:
        raise AlgorithmError(
            f"weight vector has shape {flat.shape}, the model needs a flat vector of {expected} values"
        )
    if not np.isfinite(flat).all():
        raise AlgorithmError("weight vector holds NaN or infinite values; refusing to load it")
    out: StateDict = {}
    at = 0
    for name, ref in like.state_dict().items():
        n = ref.numel()
        out[name] = torch.tensor(flat[at : at + n], dtype=ref.dtype).reshape(ref.shape)
        at += n
    return out


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise AlgorithmError(f"model weights hold NaN or infinite values in {name}; refusing to load them")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
