"""``fl.train`` and ``fl.evaluate``: one round of FedAvg with DP-SGD at every node, summed securely.

A round, at every node of the task (the coordinator, :mod:`confide.fl`, starts one task
per round with the global model in the sealed parameters):

1. the worker loads the global weights (safetensors only, into an allow-listed
   architecture of :mod:`confide.learning`), and works out this node's noise multiplier:
   the smallest that keeps ``rounds`` rounds of its local steps within the researcher's
   ``epsilon`` (over the whole training) at ``delta``, on *its* data set size;
2. the node's accountant checks this round and the rounds left after it against the
   policy's budget for the data set, counting every job ever run on it, and records the
   round (:meth:`PeerContext.charge_training`): past the budget the node sits out, saying
   how much is left;
3. the worker evaluates the global model on the node's held-out part, trains with
   DP-SGD (Opacus), and returns ``n * (new - global)`` (each element clipped to
   ``max_update``), ``n``, the summed training loss and the evaluation sums;
4. that vector is fixed-point encoded and added by secure aggregation (round ``update``):
   the hub sees masked vectors, the researcher only the total over the nodes.

The training loss, the sample counts and the evaluation sums are not differentially
private; they leave the node only inside the secure sum. ``fl.evaluate`` sums the
evaluation of one model over the held-out parts alone (round ``eval``).

torch and opacus (the ``fl`` extra) are imported only when a step runs.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError, ConfideError, PolicyError
from confide.algorithms._registry import Algorithm, DataContext, PeerContext, TrainingCost
from confide.crypto import FixedPoint, min_bits

__all__ = [
    "EVALUATE",
    "EXTRA",
    "FL_EVALUATE",
    "FL_TRAIN",
    "MAX_LOSS",
    "EvaluateParams",
    "RoundReport",
    "TrainParams",
    "decode_vector",
    "encode_vector",
    "encoding_for",
]

EXTRA = 6  # after the update: n, training loss sum, samples drawn, correct, evaluated, evaluation loss sum
EVALUATE = 3  # correct, evaluated, evaluation loss sum
MAX_LOSS = 100.0  # a per-sample cross-entropy bound for the fixed-point range; sums are clipped to it
_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"


class _ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    job_id: str = Field(pattern=_NAME, description="the training job; the node's accountant records it")
    dataset: str = Field(min_length=1, max_length=64, description="a training_data name in node.yaml")
    model: str = Field(min_length=1, max_length=128, description="an architecture of the model registry")
    model_config_: dict[str, object] = Field(default_factory=dict, alias="model_config")
    # Tasks travel in frames of at most 64 MiB: models up to about 40 MB of weights.
    weights: str = Field(min_length=1, max_length=56_000_000, description="safetensors, base64")
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
    phase: Literal["plan", "train"] = Field(
        default="plan", description="set by the node, never the researcher"
    )

    def steps_for(self, n: int) -> int:
        """Local steps per round on ``n`` samples."""
        if self.local_steps is not None:
            return self.local_steps
        return max(1, round(self.local_epochs * n / self.batch_size))


class EvaluateParams(_ModelParams):
    """Evaluate one model on every node's held-out part."""


class TrainLocal(BaseModel):
    """What the worker tells the protocol: the plan of the round, then (``phase: train``) the vector."""

    model_config = ConfigDict(extra="forbid")

    length: int
    n_train: int
    n_test: int
    noise_multiplier: float | None
    sample_rate: float
    steps: int
    problem: str | None = None
    vector: str = ""


class RoundReport(BaseModel):
    """What a node reports to the researcher (sealed) after a round or an evaluation."""

    model_config = ConfigDict(extra="forbid")

    node: str
    round: int
    survivors: list[str]
    noise_multiplier: float | None = None
    job_epsilon: float | None = None
    dataset_epsilon: float | None = None
    delta: float | None = None


def encoding_for(params: _ModelParams, parties: int) -> FixedPoint:
    """The fixed-point encoding of a round's vector, the same at every node and the researcher."""
    scale = 10**params.decimals
    bound = params.max_samples * max(MAX_LOSS, getattr(params, "max_update", 0.0))
    return FixedPoint(scale, bound, parties, min_bits(scale, bound, parties))


def encode_vector(vector: npt.NDArray[np.float64]) -> str:
    """A float vector as base64 of little-endian float64 (worker to agent)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f8").tobytes()).decode()


def decode_vector(text: str) -> npt.NDArray[np.float64]:
    """The inverse of :func:`encode_vector`."""
    try:
        return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)
    except (binascii.Error, ValueError):
        raise AlgorithmError("a local vector is not base64 of float64 values") from None


def _weights(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AlgorithmError("weights must be base64 of a safetensors file") from None


def _train_step(data: DataContext, params: TrainParams) -> TrainLocal:
    from confide.learning import (
        LocalTraining,
        build_model,
        evaluate,
        flatten,
        from_safetensors,
        noise_multiplier_for,
        train_locally,
        vector_length,
    )

    model = build_model(params.model, params.model_config_)
    length = vector_length(model) + EXTRA
    try:
        split = data.training_data(params.dataset)
    except ConfideError as exc:
        return _sitting_out(length, str(exc))
    n = len(split.train)
    steps = params.steps_for(n) if n else 1
    training = LocalTraining(
        steps=steps,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        momentum=params.momentum,
        clip_norm=params.clip_norm,
    )
    rate = training.sample_rate(n) if n else 1.0
    try:
        target = math.inf if params.epsilon is None else params.epsilon
        sigma = noise_multiplier_for(target, params.delta, rate, steps * params.rounds)
    except ValueError as exc:
        return _sitting_out(length, f"no noise reaches epsilon {params.epsilon} at this node: {exc}")
    plan = TrainLocal(
        length=length,
        n_train=n,
        n_test=len(split.test),
        noise_multiplier=sigma,
        sample_rate=rate,
        steps=steps,
    )
    if params.phase == "plan":
        return plan
    model.load_state_dict(from_safetensors(_weights(params.weights), like=model))
    before = flatten(model.state_dict()).astype(np.float64)
    checked = evaluate(model, split.test) if len(split.test) else None
    update = train_locally(model, split.train, training.model_copy(update={"noise_multiplier": sigma}))
    change = np.clip(flatten(update.state).astype(np.float64) - before, -params.max_update, params.max_update)
    loss = update.mean_loss * update.samples if math.isfinite(update.mean_loss) else 0.0
    evaluated = [0.0, 0.0, 0.0] if checked is None else [checked.correct, checked.total, checked.loss_sum]
    extra = [n, min(loss, MAX_LOSS * update.samples), update.samples, *evaluated]
    extra[-1] = min(extra[-1], MAX_LOSS * extra[-2])
    vector = np.concatenate([n * change, np.asarray(extra, dtype=np.float64)])
    _check_range(vector, params)
    return plan.model_copy(update={"vector": encode_vector(vector)})


def _sitting_out(length: int, problem: str) -> TrainLocal:
    """The local answer of a node that cannot take part: the protocol withdraws it, saying why."""
    return TrainLocal(
        length=length, n_train=0, n_test=0, noise_multiplier=None, sample_rate=0, steps=0, problem=problem
    )


def _evaluate_step(data: DataContext, params: EvaluateParams) -> TrainLocal:
    from confide.learning import build_model, evaluate, from_safetensors

    model = build_model(params.model, params.model_config_)
    try:
        split = data.training_data(params.dataset)
    except ConfideError as exc:
        return _sitting_out(EVALUATE, str(exc))
    model.load_state_dict(from_safetensors(_weights(params.weights), like=model))
    sums = evaluate(model, split.test) if len(split.test) else None
    vector = np.zeros(EVALUATE) if sums is None else np.asarray([sums.correct, sums.total, sums.loss_sum])
    vector[2] = min(vector[2], MAX_LOSS * vector[1])
    _check_range(vector, params)
    return TrainLocal(
        length=EVALUATE,
        n_train=len(split.train),
        n_test=len(split.test),
        noise_multiplier=None,
        sample_rate=0,
        steps=0,
        vector=encode_vector(vector),
    )


def _check_range(vector: npt.NDArray[np.float64], params: _ModelParams) -> None:
    limit = encoding_for(params, 1).bound
    if not np.all(np.isfinite(vector)) or np.max(np.abs(vector), initial=0.0) > limit:
        raise AlgorithmError(
            f"this node's update leaves the fixed-point range {limit:g}: it has more samples than "
            f"max_samples {params.max_samples} or a non-finite value; raise max_samples"
        )


async def _train_protocol(peers: PeerContext, params: TrainParams) -> RoundReport:
    raw = params.model_dump(by_alias=True)
    encoding = encoding_for(params, len(peers.nodes))
    plan = TrainLocal.model_validate(await peers.local({**raw, "phase": "plan"}))
    try:
        if plan.problem is not None:
            raise AlgorithmError(plan.problem)
        if plan.n_train < peers.min_count:
            raise PolicyError(
                f"node {peers.node_id!r} has {plan.n_train} training samples in {params.dataset}, fewer "
                f"than its min_count {peers.min_count}; it does not train"
            )
        cost = TrainingCost(
            plan.noise_multiplier, plan.sample_rate, plan.steps, params.rounds - params.round, params.delta
        )
        if params.round >= params.rounds:
            raise AlgorithmError(f"round {params.round} is past the job's {params.rounds} rounds")
        spend = await peers.charge_training(params.dataset, params.job_id, params.round, cost)
        trained = TrainLocal.model_validate(await peers.local({**raw, "phase": "train"}))
        values = encoding.encode(decode_vector(trained.vector))
    except ConfideError as exc:
        await peers.withdraw_from_sum(plan.length, str(exc), label="update", bits=encoding.bits)
        raise
    outcome = await peers.secure_sum(values, label="update", bits=encoding.bits, timeout_s=params.timeout_s)
    return RoundReport(
        node=peers.node_id,
        round=params.round,
        survivors=list(outcome.survivors),
        noise_multiplier=plan.noise_multiplier,
        job_epsilon=spend.job_epsilon,
        dataset_epsilon=spend.dataset_epsilon,
        delta=spend.delta,
    )


async def _evaluate_protocol(peers: PeerContext, params: EvaluateParams) -> RoundReport:
    encoding = encoding_for(params, len(peers.nodes))
    local = TrainLocal.model_validate(await peers.local(params.model_dump(by_alias=True)))
    try:
        if local.problem is not None:
            raise AlgorithmError(local.problem)
        if 0 < local.n_test < peers.min_count:
            raise PolicyError(
                f"node {peers.node_id!r} holds out {local.n_test} samples of {params.dataset}, fewer than "
                f"its min_count {peers.min_count}; it does not evaluate"
            )
        values = encoding.encode(decode_vector(local.vector))
    except ConfideError as exc:
        await peers.withdraw_from_sum(EVALUATE, str(exc), label="eval", bits=encoding.bits)
        raise
    outcome = await peers.secure_sum(values, label="eval", bits=encoding.bits, timeout_s=params.timeout_s)
    return RoundReport(node=peers.node_id, round=-1, survivors=list(outcome.survivors))


FL_TRAIN = Algorithm(
    name="fl.train",
    description="one FedAvg round: DP-SGD on the node's training data, updates summed securely",
    params=TrainParams,
    output=RoundReport,
    step=_train_step,
    protocol=_train_protocol,
    local=TrainLocal,
)

FL_EVALUATE = Algorithm(
    name="fl.evaluate",
    description="a model's accuracy and loss on every node's held-out data, summed securely",
    params=EvaluateParams,
    output=RoundReport,
    step=_evaluate_step,
    protocol=_evaluate_protocol,
    local=TrainLocal,
)
