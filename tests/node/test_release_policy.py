"""What may leave a node once a step has read its tables: the per-table ``require_dp`` checks.

A curious researcher tries to get exact figures of a table whose policy requires
differential privacy: as a per-node result, as an un-noised secure sum, as a release
charged to another table, and as peer messages of a protocol that never asks for a
release. Each is refused by the node with the table and the policy key, and nothing is
charged or sent.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from confide._errors import AlgorithmError, PolicyError
from confide.node import DataSourceConfig, WorkerPool
from confide.node._peers import TaskFacts, TaskPeers
from confide.node._policy import Policy, check_plain_release, check_secure_release
from confide.node._runs import RunExecutor
from confide.node._worker import StepOutcome

BUDGET = {"epsilon": 3.0, "delta": 1e-5}
# patients: DP by default (a budget is set); visits: exact releases allowed
POLICY = Policy(privacy_budget=BUDGET, tables={"visits": {"require_dp": False}})  # type: ignore[arg-type]
DP_KEY = "policy.require_dp, on by default because policy.privacy_budget is set"


def test_a_per_node_result_of_a_dp_table_is_refused_naming_table_and_key() -> None:
    with pytest.raises(PolicyError) as refused:
        check_plain_release(POLICY, "node-a", algorithm="stats.summary", tables=["visits", "patients"])

    message = str(refused.value)
    assert (
        "node 'node-a' refuses: stats.summary releases exact per-node figures of table 'patients'" in message
    )
    assert DP_KEY in message and "privacy: {epsilon, delta}" in message


def test_a_per_node_result_of_tables_without_dp_passes() -> None:
    check_plain_release(POLICY, "node-a", algorithm="stats.summary", tables=["visits"])
    check_plain_release(POLICY, "node-a", algorithm="diagnostics.relay", tables=[])
    check_plain_release(Policy(), "node-a", algorithm="stats.summary", tables=["patients"])


@pytest.mark.parametrize(
    ("charged", "noised", "refusal"),
    [
        ({"patients"}, False, "without differential privacy on every round"),
        (set(), True, "charges its noise to no table"),
        ({"visits"}, True, "charges its noise to 'visits'"),
    ],
)
def test_a_secure_release_of_a_dp_table_must_be_noised_and_charged_to_it(
    charged: set[str], noised: bool, refusal: str
) -> None:
    with pytest.raises(PolicyError, match=refusal) as refused:
        check_secure_release(POLICY, "node-a", tables=["patients"], charged=charged, noised=noised)

    assert "'patients'" in str(refused.value) and "policy.require_dp" in str(refused.value)


def test_a_secure_release_passes_when_noised_and_charged_or_when_no_table_requires_dp() -> None:
    check_secure_release(POLICY, "node-a", tables=["patients"], charged={"patients"}, noised=True)
    check_secure_release(POLICY, "node-a", tables=["visits"], charged=set(), noised=False)


class Steps:
    """The worker pool: each step 'reads' the tables it is told to."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, ...]] = []
        self.fail = False

    async def run(self, algorithm: str, params: dict[str, object], step: str = "main") -> StepOutcome:
        tables = tuple(str(t) for t in params["tables"])  # type: ignore[attr-defined]
        if self.fail:
            return StepOutcome(None, "the step failed", tables)
        return StepOutcome({"ok": True}, None, tables)


class Budget:
    def __init__(self) -> None:
        self.charged: list[tuple[str, float, float]] = []

    async def charge_release(
        self, *, researcher: str, task_id: str, dataset: str, epsilon: float, delta: float
    ) -> None:
        self.charged.append((dataset, epsilon, delta))


class Sums:
    node_id = "node-a"
    nodes = ["node-a", "node-b"]

    def __init__(self) -> None:
        self.summed: list[str] = []

    async def secure_sum(self, values: Any, *, label: str, **_: Any) -> None:
        self.summed.append(label)


class Channel:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, peer: str, data: bytes) -> None:
        self.sent.append(peer)

    async def send_stream(self, peer: str, data: bytes, *, window: int = 8) -> None:
        self.sent.append(peer)


def _peers(steps: Steps, budget: Budget, sums: Sums, channel: Channel) -> TaskPeers:
    facts = TaskFacts("t1", "stats.moments", "alice", 5)
    return TaskPeers(facts, channel=channel, sums=sums, steps=steps, budget=budget, policy=POLICY)  # type: ignore[arg-type]


async def _read(peers: TaskPeers, *tables: str) -> None:
    await peers.local({"tables": list(tables)})


async def test_an_unnoised_release_of_a_dp_table_is_refused_and_nothing_is_charged_or_sent() -> None:
    budget, sums, channel = Budget(), Sums(), Channel()
    peers = _peers(Steps(), budget, sums, channel)
    await _read(peers, "patients")

    with pytest.raises(PolicyError, match="'patients' without differential privacy"):
        await peers.authorise_release({"patients": (1.0, 1e-6)}, noised=False)
    with pytest.raises(
        PolicyError, match="would send an input to secure sum 'stat' derived from table 'patients'"
    ):
        await peers.secure_sum(np.zeros(3, np.uint64), label="stat")
    with pytest.raises(PolicyError, match="would send a message to a peer"):
        await peers.send("node-b", b"running total")
    with pytest.raises(PolicyError, match="would send a stream to a peer"):
        await peers.send_stream("node-b", b"running total")

    assert budget.charged == [] and sums.summed == [] and channel.sent == []


async def test_a_noised_release_charged_to_its_table_is_charged_once_and_then_sent() -> None:
    budget, sums, channel = Budget(), Sums(), Channel()
    peers = _peers(Steps(), budget, sums, channel)
    await _read(peers, "patients", "visits")

    await peers.authorise_release({"patients": (1.0, 1e-6)}, noised=True)
    await peers.secure_sum(np.zeros(3, np.uint64), label="stat")
    peers.check_leaving("its result")

    assert budget.charged == [("patients", 1.0, 1e-6)]
    assert sums.summed == ["stat"]
    assert peers.tables_read == ("patients", "visits")


async def test_a_release_of_tables_without_dp_needs_no_noise_and_charges_nothing() -> None:
    budget, sums, channel = Budget(), Sums(), Channel()
    peers = _peers(Steps(), budget, sums, channel)
    await _read(peers, "visits")

    await peers.authorise_release({}, noised=False)
    await peers.secure_sum(np.zeros(3, np.uint64), label="q0")
    await peers.send("node-b", b"figures of visits")

    assert budget.charged == [] and sums.summed == ["q0"] and channel.sent == ["node-b"]


async def test_a_dp_table_read_after_the_release_is_not_covered_by_it() -> None:
    budget, sums, channel = Budget(), Sums(), Channel()
    peers = _peers(Steps(), budget, sums, channel)
    await _read(peers, "visits")
    await peers.authorise_release({}, noised=False)

    await _read(peers, "patients")

    with pytest.raises(PolicyError, match="would send its result derived from table 'patients'"):
        peers.check_leaving("its result")


async def test_a_failed_step_still_counts_the_tables_it_read() -> None:
    steps = Steps()
    steps.fail = True
    peers = _peers(steps, Budget(), Sums(), Channel())

    with pytest.raises(AlgorithmError, match="the step failed"):
        await _read(peers, "patients")

    assert peers.tables_read == ("patients",)
    with pytest.raises(PolicyError):
        peers.check_leaving("its result")


def _executor() -> RunExecutor:
    config = SimpleNamespace(workers=1, policy=POLICY)
    kit = SimpleNamespace(party_id="node-a")
    return RunExecutor(config, kit, link=None, steps=None, budget=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "outcome",
    [
        StepOutcome({"rows": 400, "columns": {"age": {"mean": 51.3}}}, None, ("patients",)),
        # the step's own error could say something of the table: refused all the same
        StepOutcome(None, "table 'patients' has fewer rows than this node's min_count 5", ("patients",)),
    ],
)
def test_the_executor_refuses_a_per_node_result_of_a_dp_table_whole(outcome: StepOutcome) -> None:
    with pytest.raises(PolicyError, match=r"stats\.summary releases exact per-node figures of table"):
        _executor()._plain_release("stats.summary", outcome)


def test_the_executor_passes_a_per_node_result_of_a_table_without_dp() -> None:
    outcome = StepOutcome({"rows": 400}, None, ("visits",))

    assert _executor()._plain_release("stats.summary", outcome) is outcome


async def test_a_worker_step_reports_the_tables_it_read_with_its_output_or_its_error(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_text("age\n" + "".join(f"{20 + i}\n" for i in range(10)))
    source = DataSourceConfig(name="patients", format="csv", path=path, columns={"age": "int"})  # type: ignore[dict-item]
    pool = WorkerPool([source], 1, node_id="node-a", policy=Policy(min_count=5))
    try:
        ok = await pool.run("stats.summary", {"table": "patients", "columns": ["age"]})
        failed = await pool.run("stats.summary", {"table": "patients", "columns": ["weight"]})
        unknown = await pool.run("stats.summary", {"table": "nowhere", "columns": ["age"]})
    finally:
        pool.close()

    assert ok.error is None and ok.tables == ("patients",)
    assert failed.error is not None and failed.tables == ("patients",)
    assert unknown.error is not None and unknown.tables == ()
