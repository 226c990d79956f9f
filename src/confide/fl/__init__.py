"""Federated learning for researchers: FedAvg over confide nodes with DP-SGD and secure aggregation.

``train(client, collaboration, TrainingPlan(...))`` runs the rounds (``fl.train`` at the
nodes), checkpoints after each, and evaluates the result securely on the nodes' held-out
data (``fl.evaluate``); ``confide fl run`` and ``confide fl sweep`` are its command line.
Needs the ``fl`` extra (torch, opacus, safetensors).
"""

from confide.fl._coordinator import (
    Evaluation,
    RoundResult,
    TrainingPlan,
    TrainingResult,
    evaluate_federated,
    train,
)

__all__ = ["Evaluation", "RoundResult", "TrainingPlan", "TrainingResult", "evaluate_federated", "train"]
