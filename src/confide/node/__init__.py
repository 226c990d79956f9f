"""The node at a hospital: owns the data, enforces the policy, runs algorithm steps locally.

- ``_policy``: the policy models (allowed collaborations, researchers, algorithms; per-table
  rules: require_dp, extremes, identifiers, the release record) and the checks on what leaves
- ``_config``: ``NodeConfig`` from ``node.yaml`` (kit, data sources, policy)
- ``_datasource``: ``LocalData``, the node's tables (files, database tables) checked
  against their declared schema, and the SQL that reads each where it lives
- ``_database``: tables in a database (``format: sql``), read-only through SQLAlchemy
- ``_releases``: the release record, the differencing check on cells released without noise
- ``_worker``: the process pool algorithm steps run in
- ``_agent``: ``Agent`` — connect out, open sealed inputs, run, seal results
"""

from confide.node._agent import Agent
from confide.node._config import DataSourceConfig, NodeConfig, Policy, load_node_config
from confide.node._connect import hub_connector
from confide.node._datasource import LocalData
from confide.node._worker import WorkerPool

__all__ = [
    "Agent",
    "DataSourceConfig",
    "LocalData",
    "NodeConfig",
    "Policy",
    "WorkerPool",
    "hub_connector",
    "load_node_config",
]
