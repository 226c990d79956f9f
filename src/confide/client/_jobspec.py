"""C2D-style job specs: a federated query, its parties and their data, in one JSON file.

The format follows Conclave's compute-to-data jobs, so a job written for that stack
needs only its protocol swapped for SQL::

    {
      "protocol": {"data": "<base64 of the SQL text>", "format": "b64"},
      "config": {"ID": "pay-gap-2026", "backend": "secagg",
                 "collaboration": "pay-gap", "schema": "schema.yaml",
                 "parties": {"1": "acme", "2": "globex"}},
      "swift": {"endpoints": [
          {"partyId": 1, "fileName": "employees.csv"},
          {"partyId": 2, "table": "staff", "relation": "employees"}]}
    }

- ``config.parties`` maps the spec's party ids to node ids; without it a party id must
  be a node id itself.
- The storage section (any one key besides ``protocol`` and ``config``: ``swift``,
  ``dropbox``, ``local``, ...) lists one endpoint per party and relation. ``fileName``
  names the file of one of the node's *declared* data sources, ``table`` a declared
  source by name; ``relation`` names the schema table it stands for (optional when the
  schema has one table). The endpoints also say which parties hold each table.
- ``config.schema`` is the federation schema, inline or a path relative to the spec.

Nothing in a spec can make a node read anything but its declared sources: the node
resolves each endpoint against its own configuration.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from confide._errors import ConfigError

__all__ = ["BACKENDS", "Job", "SourceRef", "load_job", "parse_job"]

BACKENDS = ("secagg",)
"""How a job's secure parts are combined; Conclave's MPC backends have no equivalent here."""

_CONCLAVE_BACKENDS = ("python", "sharemind", "obliv-c", "jiff")
_TOP = ("protocol", "config")


@dataclass(frozen=True)
class SourceRef:
    """Which of a node's declared sources stands for a schema table: by name or by file name."""

    table: str | None = None
    file: str | None = None

    def as_params(self) -> dict[str, str]:
        """The form the task parameters carry to the node."""
        return {"table": self.table} if self.table is not None else {"file": str(self.file)}


@dataclass(frozen=True)
class Job:
    """A parsed job: the query, the schema with its parties filled in, and each party's sources."""

    id: str
    sql: str
    schema: dict[str, Any]
    nodes: tuple[str, ...]
    sources: Mapping[str, Mapping[str, SourceRef]]
    collaboration: str | None
    decimals: int


def load_job(path: Path) -> Job:
    """Read and check a job spec; :class:`ConfigError` names the file and the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read job spec {path}: {exc.strerror}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"job spec {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_job(spec, base=path.parent, name=str(path))


def parse_job(spec: object, *, base: Path, name: str = "job spec") -> Job:
    """Check a decoded job spec; relative schema paths are resolved against ``base``."""
    where = f"{name}:"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} a job spec is a JSON object with protocol, config and a storage section")
    missing = [key for key in _TOP if key not in spec]
    if missing:
        raise ConfigError(f"{where} field {missing[0]!r} is missing (a job needs protocol, config, storage)")
    config = _object(spec["config"], "config", where)
    job_id = _string(config.get("ID"), "config.ID", where)
    _check_backend(config.get("backend", "secagg"), where)
    sql = _protocol(spec["protocol"], where)
    parties = _party_map(config.get("parties"), where)
    endpoints = _endpoints(spec, where)
    schema = _schema(config.get("schema"), base, where)
    nodes, sources = _place(endpoints, parties, schema, where)
    collaboration = config.get("collaboration")
    if collaboration is not None:
        collaboration = _string(collaboration, "config.collaboration", where)
    decimals = config.get("decimals", 3)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 9:
        raise ConfigError(f"{where} config.decimals must be an integer from 0 to 9, not {decimals!r}")
    return Job(job_id, sql, schema, nodes, sources, collaboration, decimals)


def _object(value: object, field: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} {field} must be a JSON object, not {type(value).__name__}")
    return value


def _string(value: object, field: str, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} {field} must be a non-empty string")
    return value


def _check_backend(value: object, where: str) -> None:
    if value in BACKENDS:
        return
    if value in _CONCLAVE_BACKENDS:
        raise ConfigError(
            f"{where} config.backend {value!r} is a Conclave MPC backend; confide combines a query's "
            f'secure parts by secure aggregation: use "backend": "secagg" (or leave it out)'
        )
    raise ConfigError(f"{where} config.backend must be one of {', '.join(BACKENDS)}, not {value!r}")


def _protocol(value: object, where: str) -> str:
    protocol = _object(value, "protocol", where)
    if protocol.get("format") != "b64":
        raise ConfigError(
            f'{where} protocol.format must be "b64" (the query, base64-encoded), '
            f"not {protocol.get('format')!r}"
        )
    data = protocol.get("data")
    if not isinstance(data, str) or not data:
        raise ConfigError(f"{where} protocol.data must be the base64-encoded SQL query")
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} protocol.data is not valid base64 of UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{where} protocol.data decodes to an empty query")
    if text.lstrip().startswith(("import ", "from ")):
        raise ConfigError(
            f"{where} protocol.data decodes to Python; a job carries one SQL SELECT statement "
            "(DSL queries compile and explain in Python with confide.query, but run only as SQL for now)"
        )
    return text


def _party_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _object(value, "config.parties", where)
    return {str(k): _string(v, f"config.parties[{k!r}]", where) for k, v in mapping.items()}


def _endpoints(spec: dict[str, Any], where: str) -> list[dict[str, Any]]:
    storage = [key for key in spec if key not in _TOP]
    if len(storage) != 1:
        found = ", ".join(storage) or "none"
        raise ConfigError(
            f"{where} a job needs exactly one storage section besides protocol and config "
            f'(e.g. "swift": {{"endpoints": [...]}}); found: {found}'
        )
    section = _object(spec[storage[0]], storage[0], where)
    endpoints = section.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        raise ConfigError(f"{where} {storage[0]}.endpoints must be a non-empty list of party endpoints")
    checked = []
    for i, endpoint in enumerate(endpoints):
        field = f"{storage[0]}.endpoints[{i}]"
        endpoint = _object(endpoint, field, where)
        unknown = set(endpoint) - {"partyId", "fileName", "table", "relation"}
        if unknown:
            raise ConfigError(
                f"{where} {field} has unknown field {sorted(unknown)[0]!r} "
                "(allowed: partyId, fileName, table, relation)"
            )
        if "partyId" not in endpoint:
            raise ConfigError(f"{where} {field}.partyId is missing")
        if ("fileName" in endpoint) == ("table" in endpoint):
            raise ConfigError(f"{where} {field} needs exactly one of fileName or table")
        checked.append({**endpoint, "_field": field})
    return checked


def _schema(value: object, base: Path, where: str) -> dict[str, Any]:
    if value is None:
        raise ConfigError(f"{where} config.schema is missing: give the federation schema inline or as a path")
    if isinstance(value, str):
        path = base / value
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{where} config.schema: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} config.schema: {path} is not valid YAML ({exc})") from None
        value = loaded
    schema = _object(value, "config.schema", where)
    tables = _object(schema.get("tables"), "config.schema.tables", where)
    return {
        **schema,
        "tables": {k: dict(_object(v, f"config.schema.tables.{k}", where)) for k, v in tables.items()},
    }


def _place(
    endpoints: list[dict[str, Any]], parties: Mapping[str, str], schema: dict[str, Any], where: str
) -> tuple[tuple[str, ...], dict[str, dict[str, SourceRef]]]:
    tables: dict[str, dict[str, Any]] = schema["tables"]
    holders: dict[str, list[str]] = {}
    sources: dict[str, dict[str, SourceRef]] = {}
    for endpoint in endpoints:
        field = endpoint["_field"]
        party = _string(endpoint["partyId"], f"{field}.partyId", where)
        if parties and party not in parties:
            raise ConfigError(f"{where} {field}.partyId {party!r} is not mapped in config.parties")
        node = parties.get(party, party)
        relation = endpoint.get("relation")
        if relation is None:
            if len(tables) != 1:
                raise ConfigError(
                    f'{where} {field}: name the schema table with "relation"; the schema declares '
                    f"{', '.join(sorted(tables))}"
                )
            relation = next(iter(tables))
        relation = _string(relation, f"{field}.relation", where)
        if relation not in tables:
            raise ConfigError(
                f"{where} {field}.relation {relation!r} is not in the schema; it declares "
                f"{', '.join(sorted(tables))}"
            )
        if relation in sources.get(node, {}):
            raise ConfigError(f"{where} {field}: node {node!r} already has an endpoint for {relation!r}")
        if "table" in endpoint:
            ref = SourceRef(table=_string(endpoint["table"], f"{field}.table", where))
        else:
            ref = SourceRef(file=_string(endpoint["fileName"], f"{field}.fileName", where))
        sources.setdefault(node, {})[relation] = ref
        holders.setdefault(relation, []).append(node)
    for relation, nodes in holders.items():
        declared = tables[relation].get("parties")
        if declared is not None and sorted(declared) != sorted(nodes):
            raise ConfigError(
                f"{where} the schema says {relation!r} is held by {', '.join(sorted(declared))}, but the "
                f"endpoints give {', '.join(sorted(nodes))}; make them agree or drop parties from the schema"
            )
        tables[relation]["parties"] = nodes
    return tuple(sorted(sources)), sources
