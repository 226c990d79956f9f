"""The hospital's policy (``node.yaml``'s ``policy``) and the node's checks against it.

- the models: :class:`Policy` with its privacy budget (:class:`PrivacyBudget`) and its
  per-table settings (:class:`TablePolicy`), resolved per table by :meth:`Policy.for_table`;
- :func:`check_policy`: which collaborations, researchers and algorithms a run may use,
  checked before anything runs;
- :func:`check_plain_release` and :func:`check_secure_release`: what may leave the node
  once a step has read its tables, checked before anything leaves.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from confide._errors import PolicyError

__all__ = [
    "TABLE_NAME",
    "BudgetOverride",
    "EffectiveTablePolicy",
    "EpsilonDelta",
    "Policy",
    "PrivacyBudget",
    "TablePolicy",
    "check_plain_release",
    "check_policy",
    "check_secure_release",
]

TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
"""What a data source may be called (and so what ``policy.tables`` may name)."""


class EpsilonDelta(BaseModel):
    """An (epsilon, delta) pair of differential privacy: a budget, or what a task spends of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, allow_inf_nan=False, description="a positive finite number, e.g. 1.0")
    delta: float = Field(gt=0, lt=1, description="strictly between 0 and 1, e.g. 1.0e-5")


class BudgetOverride(EpsilonDelta):
    """A budget for one researcher and dataset (either may be ``"*"``) instead of the default."""

    researcher: str = Field(min_length=1, description='a researcher id, or "*" for any')
    dataset: str = Field(min_length=1, description='a data source name, or "*" for any')


class PrivacyBudget(EpsilonDelta):
    """The total privacy a researcher may spend on one dataset of this node.

    ``epsilon`` and ``delta`` are the default for every (researcher, dataset) pair; the
    first entry of ``overrides`` that matches a pair replaces them for that pair. Each pair
    has its own budget: spending on one dataset leaves the others untouched.
    """

    overrides: list[BudgetOverride] = Field(default_factory=list)

    def for_pair(self, researcher: str, dataset: str) -> EpsilonDelta:
        """The budget of ``researcher`` on ``dataset``: the first matching override, else the default."""
        for override in self.overrides:
            if override.researcher in ("*", researcher) and override.dataset in ("*", dataset):
                return EpsilonDelta(epsilon=override.epsilon, delta=override.delta)
        return EpsilonDelta(epsilon=self.epsilon, delta=self.delta)


class TablePolicy(BaseModel):
    """What the hospital allows for one table, over the node-wide policy (``policy.tables.<name>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_dp: bool | None = Field(
        default=None,
        description=(
            "refuse every release of this table without distributed differential privacy; "
            "default: the node-wide policy.require_dp"
        ),
    )
    allow_extremes: bool = Field(
        default=False,
        description=(
            "let stats.summary release this table's per-node minimum and maximum, which are single "
            "patients' values; withheld otherwise"
        ),
    )
    identifiers: list[str] = Field(
        default_factory=list,
        description=(
            "columns that identify a patient (a patient or record id): never grouped by, compared, "
            "summed or output by any algorithm; the first keys the rows in the node's release record"
        ),
    )
    differencing: bool = Field(
        default=True,
        description=(
            "refuse a release without noise whose cell uses rows that differ from an earlier released "
            "cell's by at least one and fewer than min_count rows (the release record)"
        ),
    )


class EffectiveTablePolicy(BaseModel):
    """The policy in force for one table: ``policy.tables.<name>`` resolved over the node-wide settings.

    Attributes
    ----------
    table : str
        The table's declared name.
    require_dp : bool
        Whether every release of the table must be differentially private.
    require_dp_key : str
        Where ``require_dp`` comes from, for refusals to name: ``policy.tables.<name>.require_dp``,
        ``policy.require_dp``, or the default that ``policy.privacy_budget`` switches on.
    allow_extremes : bool
        Whether ``stats.summary`` may release the table's per-node minimum and maximum.
    identifiers : tuple of str
        Columns no algorithm may read.
    differencing : bool
        Whether releases without noise are checked against the table's release record.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    require_dp: bool
    require_dp_key: str
    allow_extremes: bool
    identifiers: tuple[str, ...] = ()
    differencing: bool = True


class Policy(BaseModel):
    """What this hospital allows: collaborations, researchers, algorithms, and how much they may learn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collaborations: list[str] = Field(default_factory=list)
    researchers: list[str] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=list)
    min_count: int = Field(
        default=5,
        ge=1,
        description="the node refuses to contribute to a statistic over fewer of its own rows than this",
    )
    privacy_budget: PrivacyBudget | None = Field(
        default=None,
        description=(
            "the (epsilon, delta) each researcher may spend per dataset; without one, tasks that ask "
            "for differential privacy are refused and all others are allowed"
        ),
    )
    require_dp: bool | None = Field(
        default=None,
        description=(
            "refuse every release of this node's tables without distributed differential privacy "
            "(per-node results included); default: on exactly when privacy_budget is set"
        ),
    )
    tables: dict[str, TablePolicy] = Field(
        default_factory=dict,
        description="per data source: require_dp over the node-wide value, and allow_extremes",
    )
    allow_training_without_dp: bool = Field(
        default=False,
        description=(
            "let fl.train run without differential privacy (epsilon inf): for public or synthetic "
            "training data only"
        ),
    )
    ledger: Path | None = Field(
        default=None,
        description=(
            "the SQLite file recording the privacy spent so far; default <kit dir>/privacy-ledger.sqlite. "
            "Deleting it forgets everything spent."
        ),
    )

    @field_validator("tables")
    @classmethod
    def _table_names(cls, tables: dict[str, TablePolicy]) -> dict[str, TablePolicy]:
        bad = [name for name in tables if re.fullmatch(TABLE_NAME, name) is None]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a data source name; name a table of the node's data")
        return tables

    @model_validator(mode="after")
    def _dp_needs_a_budget(self) -> Policy:
        if self.privacy_budget is not None:
            return self
        keys = [f"policy.tables.{name}.require_dp" for name, t in self.tables.items() if t.require_dp]
        if self.require_dp:
            keys.insert(0, "policy.require_dp")
        if keys:
            raise ValueError(
                f"{keys[0]} is true but the policy has no privacy_budget: a differentially private "
                "release needs a budget to charge; add policy.privacy_budget, or set require_dp false"
            )
        return self

    def for_table(self, name: str) -> EffectiveTablePolicy:
        """The policy in force for table ``name``: its ``policy.tables`` entry over the node-wide values."""
        table = self.tables.get(name, TablePolicy())
        if table.require_dp is not None:
            require, key = table.require_dp, f"policy.tables.{name}.require_dp"
        elif self.require_dp is not None:
            require, key = self.require_dp, "policy.require_dp"
        else:
            require = self.privacy_budget is not None
            key = "policy.require_dp, on by default because policy.privacy_budget is set"
        return EffectiveTablePolicy(
            table=name,
            require_dp=require,
            require_dp_key=key,
            allow_extremes=table.allow_extremes,
            identifiers=tuple(table.identifiers),
            differencing=table.differencing,
        )

    def budget_for(self, researcher: str, dataset: str) -> EpsilonDelta | None:
        """The privacy budget of ``researcher`` on ``dataset``, or ``None`` if the policy sets none.

        ``None`` means differentially private tasks must be refused ("this node has no
        privacy_budget in its policy; add one to node.yaml to allow differentially private
        tasks"); :meth:`confide.node._ledger.PrivacyLedger.charge` does so when given ``None``.
        """
        return None if self.privacy_budget is None else self.privacy_budget.for_pair(researcher, dataset)


def check_policy(
    policy: Policy, node_id: str, *, collaboration: str, researcher: str, algorithm: str
) -> None:
    """Raise :class:`PolicyError` naming the first thing the policy does not allow."""
    for what, value, allowed, key in (
        ("collaboration", collaboration, policy.collaborations, "collaborations"),
        ("researcher", researcher, policy.researchers, "researchers"),
        ("algorithm", algorithm, policy.algorithms, "algorithms"),
    ):
        if "*" not in allowed and value not in allowed:
            raise PolicyError(
                f"node {node_id!r} refuses: its policy does not allow {what} {value!r} "
                f"(the hospital can add it to policy.{key} in the node config)"
            )


def check_plain_release(policy: Policy, node_id: str, *, algorithm: str, tables: Iterable[str]) -> None:
    """Refuse a per-node result (no distributed noise) of a table whose policy requires DP.

    Called after the step ran and before anything of its output leaves: its figures are
    exact per-node figures, which no privacy budget can account for.
    """
    for name in sorted(set(tables)):
        table = policy.for_table(name)
        if table.require_dp:
            raise PolicyError(
                f"node {node_id!r} refuses: {algorithm} releases exact per-node figures of table "
                f"{name!r}, whose policy requires differential privacy ({table.require_dp_key}); "
                "use a secure statistic with privacy: {epsilon, delta} instead"
            )


def check_secure_release(
    policy: Policy, node_id: str, *, tables: Iterable[str], charged: Collection[str], noised: bool
) -> None:
    """Refuse a secure release of a table whose policy requires DP unless every round is noised.

    ``tables`` are those the task's steps read at this node; ``charged`` those the release's
    noise is charged to; ``noised`` whether every secure round of the task carries
    distributed noise. A table that requires DP must be both noised and charged.
    """
    for name in sorted(set(tables)):
        table = policy.for_table(name)
        if not table.require_dp:
            continue
        if not noised:
            raise PolicyError(
                f"node {node_id!r} refuses: this task releases figures of table {name!r} without "
                f"differential privacy on every round, and its policy requires it ({table.require_dp_key}); "
                "ask for the statistic with privacy: {epsilon, delta}"
            )
        if name not in charged:
            raise PolicyError(
                f"node {node_id!r} refuses: this task reads table {name!r}, whose policy requires "
                f"differential privacy ({table.require_dp_key}), but charges its noise to "
                f"{', '.join(map(repr, sorted(charged))) or 'no table'}; a release is charged to "
                "every table it reads"
            )
