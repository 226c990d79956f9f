"""confide: federated statistics and learning across hospitals with a blind hub.

General layout, in dependency order (each package imports only those above it, and only
their public names; ``tests/test_layering.py`` holds the code to docs/architecture.md)::

    crypto      keys, PKI, HPKE seal/open, the only user of cryptography.hazmat
    wire        the binary envelope and typed control messages
    kit         consortium provisioning and the per-party kit files
    transport   node <-> hub channels (WebSocket, gRPC, HTTPS long-polling, in-memory)
    protocols   secure aggregation as pure state machines; distributed DP noise
    query       federated SQL / DSL -> IR -> compiler passes -> local SQL, finalisation
    learning    federated learning at the node: models, weights, DP-SGD, accounting
    algorithms  each algorithm's node half and researcher half; the one secure-sum driver
    hub         FastAPI app, store, routing, relay, the blind aggregation server
    node        agent, data sources, policy, privacy ledger, worker processes
    client      the researcher SDK: one generic run path
    local       a whole consortium on one machine (demo, tests, benchmarks)
    fl          the researcher-side FedAvg coordinator
    cli         the ``confide`` command

Public names are re-exported here; everything else lives in private ``_modules``.
"""

from confide._errors import ConfideError
from confide._version import __version__

__all__ = ["Client", "ConfideError", "__version__"]


def __getattr__(name: str) -> object:
    # The client pulls in httpx and rich; import it only when asked for.
    if name == "Client":
        from confide.client import Client

        return Client
    raise AttributeError(f"module 'confide' has no attribute {name!r}")
