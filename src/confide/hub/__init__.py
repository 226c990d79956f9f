"""The hub: directory, task routing, blind relay and audit, as a FastAPI app.

- ``_app``: ``create_app(settings, store=None)``
- ``_settings``: ``HubSettings`` from ``hub.yaml``
- ``_api``: researcher REST API; ``_sessions``: node connections; ``_service``: tasks
- ``_store``: the ``Store`` Protocol; ``_sqlstore`` (SQLite/PostgreSQL), ``_memstore``
- ``_records``: what is stored; ``_audit``: the audit writer

``RunStatus`` and ``TaskStatus`` are ``confide.wire``'s, re-exported here.
"""

from confide.hub._app import create_app, preflight
from confide.hub._settings import HubSettings, load_hub_settings
from confide.hub._store import Store
from confide.wire import RunStatus, TaskStatus

__all__ = ["HubSettings", "RunStatus", "Store", "TaskStatus", "create_app", "load_hub_settings", "preflight"]
