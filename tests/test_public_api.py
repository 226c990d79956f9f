"""The names each package exports are its public API; changing them is a deliberate act."""

from __future__ import annotations

import importlib

import pytest

import confide

PINNED = {
    "confide": {"Client", "ConfideError", "__version__"},
    "confide.algorithms": {
        "ENTRY_POINT_GROUP",
        "MAIN_STEP",
        "Algorithm",
        "CellRows",
        "DataContext",
        "Finalised",
        "LocalFigures",
        "PeerContext",
        "ResultTable",
        "SecureReport",
        "SecureRound",
        "SecureTotals",
        "Step",
        "TableSource",
        "TrainingCost",
        "TrainingSpend",
        "available",
        "contribute",
        "decode_vector",
        "encode_vector",
        "get_algorithm",
        "require_rows",
        "split_withheld",
        "withhold_small_cells",
    },
    "confide.protocols": {
        "DistributedNoise",
        "cdp_to_dp",
        "distributed_epsilon",
        "node_sigma",
        "sample_discrete_gaussian",
    },
    "confide.fl": {
        "Evaluation",
        "RoundResult",
        "TrainingPlan",
        "TrainingResult",
        "evaluate_federated",
        "sweep",
        "train",
        "write_report",
    },
    "confide.client": {
        "Client",
        "Job",
        "NodeResult",
        "QueryResult",
        "load_job",
        "PrivacySpent",
        "SecureSum",
        "StatisticResult",
        "TaskResults",
        "TaskState",
    },
    "confide.protocols.secagg": {
        "Abort",
        "Advertise",
        "AggregateOutcome",
        "Assembler",
        "ClientMessage",
        "ClientStage",
        "Contribution",
        "Finished",
        "Keys",
        "MaskedInput",
        "MessageKind",
        "SecAggClient",
        "SecAggConfig",
        "SecAggServer",
        "ServerMessage",
        "ServerStage",
        "ShareKeys",
        "Shares",
        "Survivors",
        "Unmask",
        "Withdraw",
        "config_fields",
        "config_from_fields",
        "decode_message",
        "encode_message",
        "frames_of",
        "remove_pads",
        "run_in_memory",
    },
    "confide.hub": {
        "HubSettings",
        "RunStatus",
        "Store",
        "TaskStatus",
        "create_app",
        "load_hub_settings",
        "preflight",
    },
    "confide.kit": {
        "ConsortiumSpec",
        "Kit",
        "KitFile",
        "describe_validation_error",
        "load_model",
        "provision",
        "provision_spec",
        "token_hash",
    },
    "confide.local": {
        "COLLABORATION",
        "PATIENT_COLUMNS",
        "LocalConsortium",
        "TableWriter",
        "free_port",
        "patients",
        "write_patients",
        "write_sample_patients",
    },
    "confide.node": {
        "Agent",
        "DataSourceConfig",
        "LocalData",
        "NodeConfig",
        "Policy",
        "WorkerPool",
        "hub_connector",
        "load_node_config",
    },
    "confide.transport": {
        "WEBSOCKET_PATH",
        "Connection",
        "Connector",
        "FallbackConnector",
        "GrpcConnection",
        "GrpcConnector",
        "GrpcNodeServer",
        "LongPollConnection",
        "LongPollConnector",
        "LongPollHub",
        "MemoryConnection",
        "MemoryConnector",
        "NodeWebSocket",
        "SessionLoop",
        "TransportKind",
        "WebSocketConnection",
        "WebSocketConnector",
        "longpoll_router",
        "memory_pair",
        "websocket_url",
    },
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_exported_names_are_pinned(module: str) -> None:
    imported = importlib.import_module(module)

    assert set(imported.__all__) == PINNED[module]
    assert all(hasattr(imported, name) for name in imported.__all__)


def test_top_level_client_is_the_sdk_client() -> None:
    from confide.client import Client

    assert confide.Client is Client


def test_importing_confide_has_no_side_effects_and_stays_light() -> None:
    import subprocess
    import sys

    heavy = "('fastapi', 'httpx', 'torch', 'pyarrow')"
    code = f"import sys, confide; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
