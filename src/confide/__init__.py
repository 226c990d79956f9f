"""confide: federated statistics and learning across hospitals with a blind hub.

General layout, in dependency order (each package imports only those above it)::

    crypto      keys, PKI, HPKE seal/open, the only user of cryptography.hazmat
    wire        the binary envelope and typed control messages
    kit         consortium provisioning and the per-party kit files
    transport   node <-> hub channels (WebSocket, in-memory)
    algorithms  registered algorithm steps (stats.summary, ...)
    hub         FastAPI app, store, routing, audit
    node        agent, data sources, policy, worker processes
    client      the researcher SDK
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
