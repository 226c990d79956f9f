"""Fixed front ends: parameter-free transforms run once over a data set, not in every step.

A model whose first layer is a :class:`FixedTransform` (e.g. the scattering network of
``image.scatter28``) gives the same result whether that layer runs in every forward pass or
once over the data beforehand: it neither learns nor looks across samples. Training and
evaluation therefore split such a model with :func:`split_front`, transform the data once
with :func:`transformed`, which keeps the last few results (a node trains on the same data
round after round), and run only the rest of the model.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from confide.learning._data import Dataset

__all__ = ["FixedTransform", "split_front", "transformed"]

_CACHED = 4  # data sets kept transformed: a node's training and held-out parts, and a spare pair
_CHUNK = 256  # samples per forward pass of the transform: bounds memory, not the result

_cache: OrderedDict[tuple[object, ...], tuple[weakref.ref[Dataset], Dataset]] = OrderedDict()


class FixedTransform(nn.Module):
    """A parameter-free, data-independent layer at the front of a model.

    Subclasses hold no trainable parameters (filters go in non-persistent buffers, so the
    state dict nodes and coordinator exchange leaves them out) and treat each sample on its
    own. ``cache_key`` must tell apart transforms whose outputs differ.
    """

    def cache_key(self) -> tuple[object, ...]:
        raise NotImplementedError


def split_front(model: nn.Module) -> tuple[FixedTransform | None, nn.Module]:
    """``(front, rest)`` if ``model`` is a ``Sequential`` led by a fixed transform, else ``(None, model)``.

    ``rest`` shares its layers with ``model``: training it trains ``model``.
    """
    if isinstance(model, nn.Sequential) and len(model) > 1 and isinstance(model[0], FixedTransform):
        return model[0], nn.Sequential(*list(model)[1:])
    return None, model


def transformed(front: FixedTransform, data: Dataset) -> Dataset:
    """``data`` with ``front`` applied to every sample, computed once per (transform, data set)."""
    if len(data) == 0:
        return data  # nothing will run on it
    key = (front.cache_key(), id(data))
    hit = _cache.get(key)
    if hit is not None and hit[0]() is data:
        _cache.move_to_end(key)
        return hit[1]
    front.eval()
    with torch.inference_mode():
        parts = [
            front(torch.from_numpy(np.array(data.x[start : start + _CHUNK]))).numpy()
            for start in range(0, len(data), _CHUNK)
        ]
    result = Dataset(np.concatenate(parts), data.y, data.classes)
    _cache[key] = (weakref.ref(data), result)
    while len(_cache) > _CACHED:
        _cache.popitem(last=False)
    return result
