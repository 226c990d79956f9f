"""The FedAvg coordinator on the researcher's side: one ``fl.train`` task per round.

Every round the coordinator seals the global model to each node (the task's parameters),
the nodes train with DP-SGD and add ``n * (new - global)`` by secure aggregation, and the
coordinator moves the global model by the weighted mean update. After every round the
model and the history are written to the checkpoint folder (model first, under the
round's own name, then the job file naming it, each by atomic rename), so a coordinator
that stops at any point resumes from the last finished round with the same job id.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from confide._errors import ConfigError, TaskError
from confide.algorithms.federated_learning import (
    EvaluateParams,
    EvaluationTotals,
    RoundTotals,
    TrainParams,
)

if TYPE_CHECKING:
    from confide.algorithms import Finalised
    from confide.client import Client
    from confide.learning import Dataset, Model

__all__ = ["Evaluation", "RoundResult", "TrainingPlan", "TrainingResult", "evaluate_federated", "train"]

_JOB_FILE = "job.json"


class TrainingPlan(BaseModel):
    """What the researcher asks for: model, data set, rounds, privacy and local training.

    ``epsilon`` is the target over the whole job (every round) at ``delta``; each node
    works out its own noise for it. ``math.inf`` trains without differential privacy,
    which a node allows only where its policy says so.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    dataset: str = Field(min_length=1, max_length=64)
    model: str = "image.cnn28"
    model_config_: dict[str, Any] = Field(default_factory=dict, alias="model_config")
    rounds: int = Field(default=10, ge=1, le=100_000)
    epsilon: float = Field(default=math.inf, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0, le=1e6)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    learning_rate: float = Field(default=0.5, gt=0, le=1000)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    local_epochs: float = Field(default=1.0, gt=0, le=1000)
    local_steps: int | None = Field(default=None, ge=1, le=1_000_000)
    max_update: float = Field(default=10.0, gt=0, le=1e6)
    server_learning_rate: float = Field(default=1.0, gt=0)
    max_samples: int = Field(default=1_000_000, ge=1, le=10**8)
    seed: int = Field(default=0, description="seeds the initial model (public), never the nodes' noise")
    timeout_s: float = Field(default=900.0, gt=0, le=24 * 3600)

    def round_params(
        self, job_id: str, round: int, weights: str, parameters: int | None = None
    ) -> TrainParams:
        """The sealed parameters of round ``round``.

        ``parameters`` is the model's parameter count, which fixes the length of the round's
        secure sum; by default it is counted from the registry's architecture.
        """
        if parameters is None:
            from confide.learning import flatten

            parameters = int(flatten(_initial_model(self).state_dict()).size)
        fields = self.model_dump(by_alias=True, exclude={"server_learning_rate", "seed"})
        fields["epsilon"] = None if math.isinf(self.epsilon) else self.epsilon  # JSON has no infinity
        return TrainParams.model_validate(
            {**fields, "job_id": job_id, "round": round, "weights": weights, "parameters": parameters}
        )


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and mean cross-entropy on some samples."""

    accuracy: float
    loss: float
    samples: int


@dataclass(frozen=True)
class RoundResult:
    """One finished round.

    ``evaluation`` is the *incoming* global model's, on the nodes' held-out parts (summed
    securely before they trained); ``train_loss`` the mean loss of the local steps.
    """

    round: int
    train_loss: float
    evaluation: Evaluation | None
    participants: tuple[str, ...]
    samples: int
    seconds: float
    epsilon: dict[str, float]


@dataclass
class TrainingResult:
    """The trained model and how it got there."""

    job_id: str
    plan: TrainingPlan
    weights: bytes
    rounds: list[RoundResult] = field(default_factory=list)
    epsilon: dict[str, float] = field(default_factory=dict)
    noise_multiplier: dict[str, float | None] = field(default_factory=dict)
    federated: Evaluation | None = None
    researcher: Evaluation | None = None

    def model(self) -> Model:
        """The trained model, built from the registry with the final weights."""
        from confide.learning import build_model, from_safetensors

        module = build_model(self.plan.model, self.plan.model_config_)
        module.load_state_dict(from_safetensors(self.weights, like=module))
        return module


def train(
    client: Client,
    collaboration: str,
    plan: TrainingPlan,
    *,
    nodes: Sequence[str] | None = None,
    checkpoint: Path | None = None,
    test_set: Dataset | None = None,
    progress: Callable[[RoundResult, TrainingPlan], None] | None = None,
) -> TrainingResult:
    """Run FedAvg over the collaboration's nodes; resume from ``checkpoint`` if it holds this plan.

    Parameters
    ----------
    client, collaboration
        The researcher's connection and the study.
    plan
        Model, data set, rounds, privacy and local training.
    nodes
        The nodes to train on; default all of the collaboration's.
    checkpoint
        A folder for the model and history after every round; a job found there with the
        same plan is resumed, one with another plan is refused.
    test_set
        Samples the researcher holds; the final model is evaluated on them too.
    progress
        Called after every round.

    Raises
    ------
    TaskError
        A round failed: the message has each node's reason (e.g. its budget is spent).
    ConfigError
        The checkpoint folder holds another job, or cannot be written.
    """
    from confide.learning import flatten, to_safetensors

    targets = sorted(nodes if nodes is not None else client.nodes(collaboration))
    model, state = _start(plan, checkpoint)
    result = _resumed(plan, state, to_safetensors(model.state_dict()))
    parameters = int(flatten(model.state_dict()).size)
    for index in range(len(state.history), plan.rounds):
        started = time.monotonic()
        weights = base64.b64encode(to_safetensors(model.state_dict())).decode()
        params = plan.round_params(state.job_id, index, weights, parameters)
        summed = _compute(client, collaboration, "fl.train", params, targets, plan.timeout_s, index)
        if not isinstance(summed, RoundTotals):  # pragma: no cover - fl.train finalises to one
            raise TaskError(f"round {index}: fl.train did not finalise to round totals")
        finished = _step(model, plan, summed, index, time.monotonic() - started)
        _record(result, finished, summed, model)
        if checkpoint is not None:
            _checkpoint(checkpoint, state, result, finished, index)
        if progress is not None:
            progress(finished, plan)
    result.federated = evaluate_federated(
        client, collaboration, plan, result.weights, targets, state.job_id, parameters
    )
    result.researcher = None if test_set is None else _evaluate_here(model, test_set)
    return result


def _evaluate_here(model: Model, test_set: Dataset) -> Evaluation:
    """The final model on samples the researcher holds."""
    from confide.learning import evaluate

    sums = evaluate(model, test_set)
    return Evaluation(sums.accuracy, sums.mean_loss, sums.total)


def _record(result: TrainingResult, finished: RoundResult, summed: RoundTotals, model: Model) -> None:
    from confide.learning import to_safetensors

    result.rounds.append(finished)
    result.epsilon.update(finished.epsilon)
    result.noise_multiplier.update(summed.noise_multiplier)
    result.weights = to_safetensors(model.state_dict())


def _checkpoint(
    folder: Path, state: _State, result: TrainingResult, finished: RoundResult, index: int
) -> None:
    state.history.append(_round_json(finished))
    state.epsilon, state.noise_multiplier = result.epsilon, result.noise_multiplier
    _save(folder, state, result.weights, index)


def _resumed(plan: TrainingPlan, state: _State, weights: bytes) -> TrainingResult:
    """The result so far: the rounds and epsilons a checkpoint recorded (none for a new job)."""
    result = TrainingResult(state.job_id, plan, weights)
    result.rounds = [_round_from(r) for r in state.history]
    result.epsilon = dict(state.epsilon)
    result.noise_multiplier = dict(state.noise_multiplier)
    return result


def _start(plan: TrainingPlan, checkpoint: Path | None) -> tuple[Model, _State]:
    """The initial model and job state, or the checkpoint's when it holds this plan."""
    from confide.learning import from_safetensors

    model = _initial_model(plan)
    state = _load(checkpoint, plan) if checkpoint is not None else None
    if state is None:
        return model, _State(job_id=f"fl-{secrets.token_hex(6)}", plan=plan.model_dump(by_alias=True))
    saved = (checkpoint / state.weights_file).read_bytes() if checkpoint and state.weights_file else b""
    if saved:
        model.load_state_dict(from_safetensors(saved, like=model))
    return model, state


def _step(model: Model, plan: TrainingPlan, summed: RoundTotals, index: int, seconds: float) -> RoundResult:
    """Move the global model by the weighted mean update (FedAvg), and say how the round went."""
    from confide.learning import flatten, unflatten

    if summed.samples < 1:
        raise TaskError(f"round {index}: the nodes summed no training samples")
    step = plan.server_learning_rate * summed.update / summed.samples
    moved = flatten(model.state_dict()).astype(np.float64) + step
    model.load_state_dict(unflatten(moved.astype(np.float32), like=model))
    evaluated = summed.evaluated
    evaluation = None
    if evaluated >= 1:
        evaluation = Evaluation(
            summed.correct / evaluated, summed.evaluation_loss / evaluated, round(evaluated)
        )
    return RoundResult(
        round=index,
        train_loss=summed.loss_sum / summed.drawn if summed.drawn else math.nan,
        evaluation=evaluation,
        participants=tuple(sorted(summed.survivors)),
        samples=round(summed.samples),
        seconds=seconds,
        epsilon=dict(summed.epsilon),
    )


def _initial_model(plan: TrainingPlan) -> Model:
    from confide.learning import build_model

    return build_model(plan.model, plan.model_config_, seed=plan.seed)


def evaluate_federated(
    client: Client,
    collaboration: str,
    plan: TrainingPlan,
    weights: bytes,
    nodes: Sequence[str],
    job_id: str,
    parameters: int | None = None,
) -> Evaluation | None:
    """Accuracy and loss of ``weights`` over every node's held-out part, summed securely.

    ``parameters`` is the model's parameter count (counted from the architecture by default).
    """
    if parameters is None:
        from confide.learning import flatten

        parameters = int(flatten(_initial_model(plan).state_dict()).size)
    params = EvaluateParams.model_validate(
        {
            "job_id": job_id,
            "dataset": plan.dataset,
            "model": plan.model,
            "model_config": plan.model_config_,
            "weights": base64.b64encode(weights).decode(),
            "parameters": parameters,
            "max_samples": plan.max_samples,
            "timeout_s": plan.timeout_s,
        }
    )
    summed = _compute(client, collaboration, "fl.evaluate", params, nodes, plan.timeout_s, None)
    if not isinstance(summed, EvaluationTotals):  # pragma: no cover - fl.evaluate finalises to one
        raise TaskError("evaluation: fl.evaluate did not finalise to evaluation sums")
    if summed.total < 1:
        return None
    return Evaluation(summed.correct / summed.total, summed.loss_sum / summed.total, round(summed.total))


def _compute(
    client: Client,
    collaboration: str,
    algorithm: str,
    params: BaseModel,
    nodes: Sequence[str],
    timeout_s: float,
    round: int | None,
) -> Finalised:
    """One task through the client's generic path; a failure says which round it was."""
    raw = params.model_dump(mode="json", by_alias=True)
    try:
        return client.compute(collaboration, algorithm, raw, nodes=list(nodes), timeout_s=timeout_s)
    except TaskError as exc:
        where = f"round {round}: " if round is not None else "evaluation: "
        raise TaskError(where + str(exc)) from None


# -- checkpoints -----------------------------------------------------------------------------


@dataclass
class _State:
    job_id: str
    plan: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    epsilon: dict[str, float] = field(default_factory=dict)
    noise_multiplier: dict[str, float | None] = field(default_factory=dict)
    weights_file: str = ""


def _load(folder: Path, plan: TrainingPlan) -> _State | None:
    path = folder / _JOB_FILE
    if not path.exists():
        return None
    try:
        state = _State(**json.loads(path.read_text()))
        saved = TrainingPlan.model_validate(state.plan)
    except (OSError, ValueError, TypeError, ValidationError) as exc:
        raise ConfigError(
            f"{path} is not a confide training checkpoint ({exc}); use another folder"
        ) from None
    if saved != plan:
        differ = [k for k, v in plan.model_dump(by_alias=True).items() if state.plan.get(k) != v]
        raise ConfigError(
            f"{folder} holds job {state.job_id}, trained with other settings ({', '.join(differ)} "
            "differ); give another checkpoint folder, or the same settings to resume it"
        )
    return state


def _save(folder: Path, state: _State, weights: bytes, round: int) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"model-round-{round:05d}.safetensors"
        _write_atomically(folder / name, weights)
        previous, state.weights_file = state.weights_file, name
        _write_atomically(folder / _JOB_FILE, json.dumps(asdict(state), indent=1).encode())
        if previous and previous != name:
            (folder / previous).unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the checkpoint in {folder}: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _round_json(result: RoundResult) -> dict[str, Any]:
    return asdict(result)


def _round_from(data: Mapping[str, Any]) -> RoundResult:
    evaluation = data.get("evaluation")
    return RoundResult(
        round=int(data["round"]),
        train_loss=float(data["train_loss"]),
        evaluation=Evaluation(**evaluation) if evaluation else None,
        participants=tuple(data["participants"]),
        samples=int(data["samples"]),
        seconds=float(data["seconds"]),
        epsilon={str(k): float(v) for k, v in data["epsilon"].items()},
    )
