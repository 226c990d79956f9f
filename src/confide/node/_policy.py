"""The hospital's policy check: which collaborations, researchers and algorithms a run may use."""

from __future__ import annotations

from confide._errors import PolicyError
from confide.node._config import Policy

__all__ = ["check_policy"]


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
