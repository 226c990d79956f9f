"""Local evaluation as sums, so that the coordinator can add them up securely across nodes.

A node reports ``(correct, total, loss_sum)`` on its held-out split; the secure sum over
nodes gives the federated accuracy ``sum(correct) / sum(total)`` and mean loss
``sum(loss_sum) / sum(total)`` without revealing any one hospital's figures. The same
function evaluates the global model on a researcher-side test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from confide.learning._data import Dataset
from confide.learning._frontend import split_front, transformed

__all__ = ["EvaluationSums", "evaluate"]


@dataclass(frozen=True)
class EvaluationSums:
    """Correct predictions, samples, and summed cross-entropy on one data set."""

    correct: int
    total: int
    loss_sum: float

    @property
    def accuracy(self) -> float:
        """``correct / total`` (NaN on an empty set)."""
        return self.correct / self.total if self.total else float("nan")

    @property
    def mean_loss(self) -> float:
        """``loss_sum / total`` (NaN on an empty set)."""
        return self.loss_sum / self.total if self.total else float("nan")

    def as_vector(self) -> npt.NDArray[np.float64]:
        """``[correct, total, loss_sum]``, the fixed-shape vector a node feeds into secure aggregation."""
        return np.array([self.correct, self.total, self.loss_sum], dtype=np.float64)

    def __add__(self, other: EvaluationSums) -> EvaluationSums:
        return EvaluationSums(
            self.correct + other.correct, self.total + other.total, self.loss_sum + other.loss_sum
        )


def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 2048) -> EvaluationSums:
    """Evaluate ``model`` on ``data`` in inference mode, ``batch_size`` samples at a time.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits; put in ``eval`` mode (and left there).
    data : Dataset
        The samples to score.
    batch_size : int
        Samples per forward pass; bounds memory, not the result.

    Returns
    -------
    EvaluationSums
        Correct predictions (argmax of the logits), sample count, summed cross-entropy.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model.eval()
    front, model = split_front(model)  # a fixed front end runs once over the data, and is kept
    if front is not None:
        data = transformed(front, data)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x = torch.from_numpy(np.array(data.x[start : start + batch_size]))
            y = torch.from_numpy(np.array(data.y[start : start + batch_size]))
            logits = model(x)
            loss_sum += float(criterion(logits, y))
            correct += int((logits.argmax(dim=1) == y).sum())
    return EvaluationSums(correct, len(data), loss_sum)
