"""The policy's privacy settings in ``node.yaml``: min_count, privacy_budget, ledger, require_dp, tables."""

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


BUDGET = "privacy_budget: {epsilon: 1.0, delta: 1.0e-5}"
DATA = """\
data:
  - {name: patients, format: csv, path: p.csv, columns: {age: int}}
  - {name: visits, format: csv, path: v.csv, columns: {age: int}}
"""


def _node(tmp_path: Path, policy: str) -> Policy:
    return load_node_config(_write(tmp_path, f"kit: k\n{DATA}policy: {policy}\n")).policy


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{}", False),  # no budget: nothing to charge, so no DP required
        (f"{{{BUDGET}}}", True),  # a budget switches it on
        (f"{{{BUDGET}, require_dp: false}}", False),
        (f"{{{BUDGET}, require_dp: true}}", True),
    ],
)
def test_require_dp_is_on_by_default_exactly_when_a_budget_is_set(
    tmp_path: Path, policy: str, expected: bool
) -> None:
    resolved = _node(tmp_path, policy).for_table("patients")

    assert resolved.require_dp is expected
    assert resolved.allow_extremes is False


def test_a_table_overrides_the_node_wide_require_dp_and_names_its_key(tmp_path: Path) -> None:
    policy = _node(
        tmp_path,
        f"{{{BUDGET}, tables: {{patients: {{require_dp: false, allow_extremes: true}}, "
        "visits: {allow_extremes: false}}}",
    )

    patients, visits = policy.for_table("patients"), policy.for_table("visits")

    assert (patients.require_dp, patients.allow_extremes) == (False, True)
    assert patients.require_dp_key == "policy.tables.patients.require_dp"
    assert (visits.require_dp, visits.allow_extremes) == (True, False)
    assert visits.require_dp_key.startswith("policy.require_dp, on by default")


def test_a_table_can_require_dp_where_the_node_does_not(tmp_path: Path) -> None:
    policy = _node(tmp_path, f"{{{BUDGET}, require_dp: false, tables: {{visits: {{require_dp: true}}}}}}")

    assert policy.for_table("patients").require_dp is False
    assert policy.for_table("patients").require_dp_key == "policy.require_dp"
    assert policy.for_table("visits").require_dp is True


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("{require_dp: true}", r"policy\.require_dp is true but the policy has no privacy_budget"),
        (
            "{tables: {visits: {require_dp: true}}}",
            r"policy\.tables\.visits\.require_dp is true but the policy has no privacy_budget",
        ),
        (
            "{tables: {patiens: {allow_extremes: true}}}",
            r"'patiens', which is no data source.*patients, visits",
        ),
        ("{tables: {patients: {allow_extreme: true}}}", r"policy\.tables\.patients\.allow_extreme"),
        ("{tables: {'bad name': {}}}", r"'bad name' is not a data source name"),
    ],
)
def test_bad_table_policies_say_what_to_fix(tmp_path: Path, policy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _node(tmp_path, policy)


def test_a_dp_requirement_says_it_needs_a_budget_to_charge(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs a budget to charge; add policy\.privacy_budget"):
        _node(tmp_path, "{require_dp: true}")


def test_table_policies_round_trip(tmp_path: Path) -> None:
    policy = _node(tmp_path, f"{{{BUDGET}, tables: {{visits: {{require_dp: false, allow_extremes: true}}}}}}")

    assert Policy.model_validate(policy.model_dump(mode="json")) == policy
