"""Federated learning for researchers: FedAvg over confide nodes with DP-SGD and secure aggregation.

``train(client, collaboration, TrainingPlan(...))`` runs the rounds (``fl.train`` at the
nodes), checkpoints after each, and evaluates the result securely on the nodes' held-out
data (``fl.evaluate``); ``confide fl run`` and ``confide fl sweep`` are its command line.
Needs the ``fl`` extra (torch, opacus, safetensors).
"""

from typing import TYPE_CHECKING

from confide.fl._coordinator import (
    Evaluation,
    RoundResult,
    TrainingPlan,
    TrainingResult,
    evaluate_federated,
    train,
)

if TYPE_CHECKING:
    from confide.fl._sweep import sweep, write_report

__all__ = [
    "Evaluation",
    "RoundResult",
    "TrainingPlan",
    "TrainingResult",
    "evaluate_federated",
    "sweep",
    "train",
    "write_report",
]


def __getattr__(name: str) -> object:
    # The sweep starts a local consortium: import it only when asked for.
    if name in ("sweep", "write_report"):
        from confide.fl import _sweep

        return getattr(_sweep, name)
    raise AttributeError(f"module 'confide.fl' has no attribute {name!r}")
