"""``fl.train`` and ``fl.evaluate``: one round of FedAvg with DP-SGD at every node, summed securely.

A round, at every node of the task (the coordinator, :mod:`confide.fl`, starts one task
per round with the global model in the sealed parameters):

1. step ``plan`` (worker): this node's noise multiplier, the smallest that keeps
   ``rounds`` rounds of its local steps within the researcher's ``epsilon`` (over the
   whole training) at ``delta``, on *its* data set size;
2. gather (agent): the node's accountant checks this round and the rounds left after it
   against the policy's budget for the data set, counting every job ever run on it, and
   records the round (:meth:`PeerContext.charge_training`): past the budget the node sits
   out, saying how much is left;
3. the main step (worker) loads the global weights (safetensors only, into an
   allow-listed architecture of :mod:`confide.learning`), evaluates them on the node's
   held-out part, trains with DP-SGD (Opacus), and returns ``n * (new - global)`` (each
   element clipped to ``max_update``), ``n``, the summed training loss and the evaluation
   sums;
4. round ``update``: that vector, fixed-point encoded, summed securely (the driver of
   :mod:`confide.algorithms._secure`); the hub sees masked vectors;
5. finalise (researcher): the named totals of the round (:class:`RoundTotals`).

The training loss, the sample counts and the evaluation sums are not differentially
private; they leave the node only inside the secure sum. ``fl.evaluate`` sums the
evaluation of one model over the held-out parts alone (round ``eval``).

torch and opacus (the ``fl`` extra) are imported only when a step runs.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext, PeerContext, TrainingCost
from confide.algorithms._registry import Algorithm, Step
from confide.algorithms._result import ResultTable
from confide.algorithms._secure import LocalFigures, SecureRound, SecureTotals, require_rows
from confide.crypto import FixedPoint, min_bits

__all__ = [
    "EVALUATE",
    "EXTRA",
    "FL_EVALUATE",
    "FL_TRAIN",
    "MAX_LOSS",
    "EvaluateParams",
    "EvaluationTotals",
    "RoundTotals",
    "TrainParams",
    "encoding_for",
]

EXTRA = 6  # after the update: n, training loss sum, samples drawn, correct, evaluated, evaluation loss sum
EVALUATE = 3  # correct, evaluated, evaluation loss sum
MAX_LOSS = 100.0  # a per-sample cross-entropy bound for the fixed-point range; sums are clipped to it
_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"
PLAN = "plan"  # the step that works out a round's plan before the node charges its accountant


class _ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    job_id: str = Field(pattern=_NAME, description="the training job; the node's accountant records it")
    dataset: str = Field(min_length=1, max_length=64, description="a training_data name in node.yaml")
    model: str = Field(min_length=1, max_length=128, description="an architecture of the model registry")
    model_config_: dict[str, object] = Field(default_factory=dict, alias="model_config")
    # Tasks travel in frames of at most 64 MiB: models up to about 40 MB of weights.
    weights: str = Field(min_length=1, max_length=56_000_000, description="safetensors, base64")
    parameters: int = Field(ge=1, le=10**9, description="the architecture's parameter count; checked")
    max_samples: int = Field(default=1_000_000, ge=1, le=10**8, description="bounds the fixed-point range")
    decimals: int = Field(default=6, ge=0, le=9)
    timeout_s: float = Field(default=600.0, gt=0, le=24 * 3600)


class TrainParams(_ModelParams):
    """One round of federated training, as the researcher asks for it."""

    round: int = Field(ge=0, le=100_000)
    rounds: int = Field(ge=1, le=100_000, description="rounds of the whole job: epsilon covers them all")
    epsilon: float | None = Field(gt=0, description="target epsilon over the whole job; null: no DP")
    delta: float = Field(default=1e-5, gt=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0, le=1e6)
    batch_size: int = Field(default=256, ge=1, le=1_000_000, description="expected (Poisson) batch size")
    learning_rate: float = Field(default=0.5, gt=0, le=1000)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    local_epochs: float = Field(default=1.0, gt=0, le=1000)
    local_steps: int | None = Field(default=None, ge=1, le=1_000_000, description="overrides local_epochs")
    max_update: float = Field(default=10.0, gt=0, le=1e6, description="each element of new - global")

    def steps_for(self, n: int) -> int:
        """Local steps per round on ``n`` samples."""
        if self.local_steps is not None:
            return self.local_steps
        return max(1, round(self.local_epochs * n / self.batch_size))


class EvaluateParams(_ModelParams):
    """Evaluate one model on every node's held-out part."""


class TrainPlan(BaseModel):
    """What the ``plan`` step tells the agent before it charges the accountant."""

    model_config = ConfigDict(extra="forbid")

    n_train: int
    n_test: int
    noise_multiplier: float | None
    sample_rate: float
    steps: int


@dataclass(frozen=True)
class RoundTotals:
    """A finished round of ``fl.train`` at the researcher: the summed update and figures, by name."""

    update: npt.NDArray[np.float64]
    """The sum over the nodes of ``n * (new - global)``."""
    samples: float
    loss_sum: float
    drawn: float
    correct: float
    evaluated: float
    evaluation_loss: float
    survivors: tuple[str, ...]
    sat_out: dict[str, str] = field(default_factory=dict)
    epsilon: dict[str, float] = field(default_factory=dict)
    """Epsilon this job has spent at each node, this round included."""
    noise_multiplier: dict[str, float | None] = field(default_factory=dict)

    @property
    def tables(self) -> list[ResultTable]:
        """The round's figures as one table."""
        loss = self.loss_sum / self.drawn if self.drawn else math.nan
        accuracy = self.correct / self.evaluated if self.evaluated else math.nan
        rows = [[f"{round(self.samples)}", f"{loss:.6g}", f"{accuracy:.6g}"]]
        return [ResultTable("federated training round", ["samples", "train loss", "held-out accuracy"], rows)]

    def notes(self) -> list[str]:
        """Who trained, and the epsilon spent."""
        spent = ", ".join(f"{n} {e:.3g}" for n, e in sorted(self.epsilon.items()))
        return [f"secure aggregation over {len(self.survivors)} node(s): {', '.join(self.survivors)}"] + (
            [f"epsilon spent by this job: {spent}"] if spent else []
        )

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON (the update itself is left out)."""
        return {
            "samples": self.samples,
            "loss_sum": self.loss_sum,
            "drawn": self.drawn,
            "correct": self.correct,
            "evaluated": self.evaluated,
            "evaluation_loss": self.evaluation_loss,
            "survivors": list(self.survivors),
            "sat_out": self.sat_out,
            "epsilon": self.epsilon,
        }


@dataclass(frozen=True)
class EvaluationTotals:
    """A model's summed evaluation over the nodes' held-out parts."""

    correct: float
    total: float
    loss_sum: float
    survivors: tuple[str, ...]
    sat_out: dict[str, str] = field(default_factory=dict)

    @property
    def tables(self) -> list[ResultTable]:
        """Accuracy and mean loss as one table."""
        accuracy = self.correct / self.total if self.total else math.nan
        loss = self.loss_sum / self.total if self.total else math.nan
        return [
            ResultTable(
                "federated evaluation",
                ["samples", "accuracy", "mean loss"],
                [[f"{round(self.total)}", f"{accuracy:.6g}", f"{loss:.6g}"]],
            )
        ]

    def notes(self) -> list[str]:
        """Who was summed."""
        return [f"secure aggregation over {len(self.survivors)} node(s): {', '.join(self.survivors)}"]

    def to_json(self) -> dict[str, Any]:
        """The sums as JSON."""
        return {
            "correct": self.correct,
            "total": self.total,
            "loss_sum": self.loss_sum,
            "survivors": list(self.survivors),
            "sat_out": self.sat_out,
        }


def encoding_for(params: _ModelParams, parties: int) -> FixedPoint:
    """The fixed-point encoding of a round's vector, the same at every node and the researcher."""
    scale = 10**params.decimals
    bound = params.max_samples * max(MAX_LOSS, getattr(params, "max_update", 0.0))
    return FixedPoint(scale, bound, parties, min_bits(scale, bound, parties))


def _weights(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AlgorithmError("weights must be base64 of a safetensors file") from None


def _plan_step(data: DataContext, params: TrainParams) -> TrainPlan:
    from confide.learning import noise_multiplier_for

    _architecture(params)  # a round of the wrong length is refused before any budget is spent
    split = data.training_data(params.dataset)
    n = len(split.train)
    steps = params.steps_for(n) if n else 1
    rate = _training(params, steps).sample_rate(n) if n else 1.0
    try:
        target = math.inf if params.epsilon is None else params.epsilon
        sigma = noise_multiplier_for(target, params.delta, rate, steps * params.rounds)
    except ValueError as exc:
        raise AlgorithmError(f"no noise reaches epsilon {params.epsilon} at this node: {exc}") from None
    return TrainPlan(n_train=n, n_test=len(split.test), noise_multiplier=sigma, sample_rate=rate, steps=steps)


def _training(params: TrainParams, steps: int) -> Any:
    from confide.learning import LocalTraining

    return LocalTraining(
        steps=steps,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        momentum=params.momentum,
        clip_norm=params.clip_norm,
    )


def _architecture(params: _ModelParams) -> Any:
    """The allow-listed architecture, checked against the parameter count the task declares."""
    from confide.learning import build_model, vector_length

    model = build_model(params.model, params.model_config_)
    if vector_length(model) != params.parameters:
        raise AlgorithmError(
            f"{params.model} with this configuration has {vector_length(model)} parameters, not the "
            f"{params.parameters} the task declares"
        )
    return model


def _model(params: _ModelParams) -> Any:
    from confide.learning import from_safetensors

    model = _architecture(params)
    model.load_state_dict(from_safetensors(_weights(params.weights), like=model))
    return model


def _train_step(data: DataContext, params: TrainParams) -> LocalFigures:
    from confide.learning import evaluate, flatten, train_locally

    plan = _plan_step(data, params)
    split = data.training_data(params.dataset)
    model = _model(params)
    before = flatten(model.state_dict()).astype(np.float64)
    checked = evaluate(model, split.test) if len(split.test) else None
    training = _training(params, plan.steps).model_copy(update={"noise_multiplier": plan.noise_multiplier})
    update = train_locally(model, split.train, training)
    change = np.clip(flatten(update.state).astype(np.float64) - before, -params.max_update, params.max_update)
    loss = update.mean_loss * update.samples if math.isfinite(update.mean_loss) else 0.0
    evaluated = [0.0, 0.0, 0.0] if checked is None else [checked.correct, checked.total, checked.loss_sum]
    n = plan.n_train
    extra = [n, min(loss, MAX_LOSS * update.samples), update.samples, *evaluated]
    extra[-1] = min(extra[-1], MAX_LOSS * extra[-2])
    vector = np.concatenate([n * change, np.asarray(extra, dtype=np.float64)])
    _check_range(vector, params)
    return LocalFigures.of({"update": vector}, {"update": n})


def _evaluate_step(data: DataContext, params: EvaluateParams) -> LocalFigures:
    from confide.learning import evaluate

    split = data.training_data(params.dataset)
    model = _model(params)
    sums = evaluate(model, split.test) if len(split.test) else None
    vector = np.zeros(EVALUATE) if sums is None else np.asarray([sums.correct, sums.total, sums.loss_sum])
    vector[2] = min(vector[2], MAX_LOSS * vector[1])
    _check_range(vector, params)
    return LocalFigures.of({"eval": vector}, {"eval": len(split.test)})


def _check_range(vector: npt.NDArray[np.float64], params: _ModelParams) -> None:
    limit = encoding_for(params, 1).bound
    if not np.all(np.isfinite(vector)) or np.max(np.abs(vector), initial=0.0) > limit:
        raise AlgorithmError(
            f"this node's update leaves the fixed-point range {limit:g}: it has more samples than "
            f"max_samples {params.max_samples} or a non-finite value; raise max_samples"
        )


def _train_rounds(params: TrainParams, nodes: Sequence[str]) -> list[SecureRound]:
    return [SecureRound("update", params.parameters + EXTRA, encoding_for(params, len(nodes)))]


async def _train_gather(peers: PeerContext, params: TrainParams) -> LocalFigures:
    raw = params.model_dump(by_alias=True)
    plan = TrainPlan.model_validate(await peers.local(raw, PLAN))
    require_rows(peers, plan.n_train, f"training on {params.dataset}")
    if params.round >= params.rounds:
        raise AlgorithmError(f"round {params.round} is past the job's {params.rounds} rounds")
    cost = TrainingCost(
        plan.noise_multiplier, plan.sample_rate, plan.steps, params.rounds - params.round, params.delta
    )
    spend = await peers.charge_training(params.dataset, params.job_id, params.round, cost)
    trained = LocalFigures.model_validate(await peers.local(raw))
    details = {
        "noise_multiplier": plan.noise_multiplier,
        "job_epsilon": spend.job_epsilon,
        "dataset_epsilon": spend.dataset_epsilon,
        "delta": spend.delta,
    }
    return trained.model_copy(update={"details": details})


def _train_finalise(params: TrainParams, sums: SecureTotals) -> RoundTotals:
    total = sums.totals["update"]
    n, loss_sum, drawn, correct, evaluated, evaluation_loss = (float(v) for v in total[-EXTRA:])
    epsilon, noise = {}, {}
    for node, report in sums.reports.items():
        job_epsilon = report.details.get("job_epsilon")
        if isinstance(job_epsilon, int | float):
            epsilon[node] = float(job_epsilon)
        sigma = report.details.get("noise_multiplier")
        noise[node] = float(sigma) if isinstance(sigma, int | float) else None
    return RoundTotals(
        total[:-EXTRA],
        n,
        loss_sum,
        drawn,
        correct,
        evaluated,
        evaluation_loss,
        sums.survivors["update"],
        dict(sums.sat_out),
        epsilon,
        noise,
    )


def _evaluate_rounds(params: EvaluateParams, nodes: Sequence[str]) -> list[SecureRound]:
    return [SecureRound("eval", EVALUATE, encoding_for(params, len(nodes)), empty_ok=True)]


def _evaluate_finalise(params: EvaluateParams, sums: SecureTotals) -> EvaluationTotals:
    correct, total, loss = (float(v) for v in sums.totals["eval"][:EVALUATE])
    return EvaluationTotals(correct, total, loss, sums.survivors["eval"], dict(sums.sat_out))


FL_TRAIN = Algorithm(
    name="fl.train",
    description="one FedAvg round: DP-SGD on the node's training data, updates summed securely",
    params=TrainParams,
    step=_train_step,
    steps={PLAN: Step(_plan_step, TrainPlan)},
    rounds=_train_rounds,
    gather=_train_gather,
    finalise=_train_finalise,
)

FL_EVALUATE = Algorithm(
    name="fl.evaluate",
    description="a model's accuracy and loss on every node's held-out data, summed securely",
    params=EvaluateParams,
    step=_evaluate_step,
    rounds=_evaluate_rounds,
    finalise=_evaluate_finalise,
)
