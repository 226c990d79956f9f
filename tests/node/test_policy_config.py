"""The policy's privacy settings in ``node.yaml``: min_count, privacy_budget and ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from confide._errors import ConfigError
from confide.node import load_node_config
from confide.node._config import EpsilonDelta, Policy, PrivacyBudget

POLICY = """\
kit: k
policy:
  collaborations: [brain-study]
  researchers: [alice, bob]
  algorithms: [stats.summary]
  min_count: 10
  privacy_budget:
    epsilon: 3.0
    delta: 1e-5
    overrides:
      - {researcher: alice, dataset: patients, epsilon: 5.0, delta: 2.0e-5}
      - {researcher: "*", dataset: imaging, epsilon: 1.0, delta: 1.0e-6}
      - {researcher: bob, dataset: "*", epsilon: 0.5, delta: 1.0e-7}
  ledger: /var/lib/confide/ledger.sqlite
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_defaults_without_privacy_settings(tmp_path: Path) -> None:
    policy = load_node_config(_write(tmp_path, "kit: k\npolicy: {researchers: [alice]}\n")).policy

    assert policy.min_count == 5
    assert policy.privacy_budget is None
    assert policy.ledger is None
    assert policy.budget_for("alice", "patients") is None


def test_privacy_settings_are_read(tmp_path: Path) -> None:
    policy = load_node_config(_write(tmp_path, POLICY)).policy

    assert policy.min_count == 10
    assert policy.ledger == Path("/var/lib/confide/ledger.sqlite")
    assert policy.privacy_budget is not None
    assert (policy.privacy_budget.epsilon, policy.privacy_budget.delta) == (3.0, 1e-5)
    assert [o.researcher for o in policy.privacy_budget.overrides] == ["alice", "*", "bob"]


def test_policy_round_trips_through_yaml(tmp_path: Path) -> None:
    policy = load_node_config(_write(tmp_path, POLICY)).policy
    dumped = policy.model_dump(mode="json")

    assert Policy.model_validate(dumped) == policy


@pytest.mark.parametrize(
    ("researcher", "dataset", "expected"),
    [
        ("alice", "patients", (5.0, 2e-5)),  # the exact override
        ("alice", "imaging", (1.0, 1e-6)),  # "*" researcher on imaging
        ("bob", "imaging", (1.0, 1e-6)),  # first match wins over bob's "*" dataset
        ("bob", "patients", (0.5, 1e-7)),  # "*" dataset for bob
        ("carol", "patients", (3.0, 1e-5)),  # no override: the default
        ("alice", "labs", (3.0, 1e-5)),
    ],
)
def test_budget_for_takes_the_first_matching_override(
    tmp_path: Path, researcher: str, dataset: str, expected: tuple[float, float]
) -> None:
    policy = load_node_config(_write(tmp_path, POLICY)).policy

    budget = policy.budget_for(researcher, dataset)

    assert budget == EpsilonDelta(epsilon=expected[0], delta=expected[1])


def test_budget_for_returns_just_epsilon_and_delta() -> None:
    budget = PrivacyBudget(epsilon=1.0, delta=1e-5).for_pair("alice", "patients")

    assert type(budget) is EpsilonDelta


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ("{min_count: 0}", r"policy\.min_count"),
        ("{min_count: many}", r"policy\.min_count"),
        ("{privacy_budget: {epsilon: 1.0, delta: 1.5}}", r"policy\.privacy_budget\.delta"),
        ("{privacy_budget: {epsilon: 1.0, delta: 0}}", r"policy\.privacy_budget\.delta"),
        ("{privacy_budget: {epsilon: 0, delta: 1.0e-5}}", r"policy\.privacy_budget\.epsilon"),
        ("{privacy_budget: {epsilon: .inf, delta: 1.0e-5}}", r"policy\.privacy_budget\.epsilon"),
        ("{privacy_budget: {epsilon: 1.0}}", r"policy\.privacy_budget\.delta"),
        (
            "{privacy_budget: {epsilon: 1.0, delta: 1.0e-5, epsilon_per_task: 0.1}}",
            r"policy\.privacy_budget\.epsilon_per_task",
        ),
        (
            "{privacy_budget: {epsilon: 1, delta: 0.1, "
            "overrides: [{researcher: a, epsilon: 1, delta: 0.1}]}}",
            r"policy\.privacy_budget\.overrides\.0\.dataset",
        ),
        (
            "{privacy_budget: {epsilon: 1, delta: 0.1, "
            "overrides: [{researcher: a, dataset: d, epsilon: -1, delta: 0.1}]}}",
            r"policy\.privacy_budget\.overrides\.0\.epsilon",
        ),
        ("{budget: {epsilon: 1.0, delta: 1.0e-5}}", r"policy\.budget"),
    ],
)
def test_bad_privacy_settings_name_the_field(tmp_path: Path, policy: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_node_config(_write(tmp_path, f"kit: k\npolicy: {policy}\n"))
