"""C2D-style job specs: parties to nodes, endpoints to declared sources, malformed specs named."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from confide._errors import ConfigError
from confide.client import load_job
from confide.client._jobspec import SourceRef, parse_job

SQL = "SELECT gender, AVG(salary) AS mean FROM employees GROUP BY gender"
SCHEMA = {
    "tables": {
        "employees": {
            "columns": {
                "gender": {"type": "str", "categories": ["F", "M"]},
                "salary": {"type": "float", "bounds": [0, 1000000]},
            }
        }
    }
}


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "protocol": {"data": base64.b64encode(SQL.encode()).decode(), "format": "b64"},
        "config": {
            "ID": "pay-gap-2026",
            "backend": "secagg",
            "collaboration": "pay-gap",
            "schema": SCHEMA,
            "parties": {"1": "acme", "2": "globex"},
        },
        "swift": {
            "endpoints": [
                {"partyId": 1, "fileName": "employees.csv"},
                {"partyId": 2, "table": "staff"},
            ]
        },
    }
    spec.update(changes)
    return spec


def test_a_job_maps_parties_to_nodes_and_endpoints_to_sources() -> None:
    job = parse_job(_spec(), base=Path("."))

    assert job.id == "pay-gap-2026"
    assert job.sql == SQL
    assert job.collaboration == "pay-gap"
    assert job.nodes == ("acme", "globex")
    assert job.sources["acme"]["employees"] == SourceRef(file="employees.csv")
    assert job.sources["globex"]["employees"] == SourceRef(table="staff")
    assert job.schema["tables"]["employees"]["parties"] == ["acme", "globex"]


def test_a_job_file_reads_its_schema_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SCHEMA))
    spec = _spec()
    spec["config"]["schema"] = "schema.yaml"
    (tmp_path / "job.json").write_text(json.dumps(spec))

    job = load_job(tmp_path / "job.json")

    assert job.schema["tables"]["employees"]["columns"]["gender"]["categories"] == ["F", "M"]


def _broken(path: str, value: object) -> dict[str, Any]:
    spec = _spec()
    *parents, last = path.split(".")
    target: Any = spec
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("protocol", KeyError, "'protocol' is missing"),
        ("protocol.format", "text", 'protocol.format must be "b64"'),
        ("protocol.data", "not base64!", "not valid base64"),
        ("protocol.data", base64.b64encode(b"import os").decode(), "decodes to Python"),
        ("config.ID", KeyError, "config.ID must be a non-empty string"),
        ("config.backend", "sharemind", "Conclave MPC backend"),
        ("config.backend", "quantum", "config.backend must be one of secagg"),
        ("config.schema", KeyError, "config.schema is missing"),
        ("config.schema", "missing.yaml", "cannot read"),
        ("config.decimals", 12, "config.decimals must be an integer from 0 to 9"),
        ("swift.endpoints", [], "swift.endpoints must be a non-empty list"),
        ("swift.endpoints.0.partyId", 3, "partyId '3' is not mapped in config.parties"),
        ("swift.endpoints.0.table", "x", "swift.endpoints[0] needs exactly one of fileName or table"),
        ("swift.endpoints.1.host", "x", "unknown field 'host'"),
        ("swift.endpoints.1.relation", "patients", "relation 'patients' is not in the schema"),
    ],
)
def test_a_malformed_job_is_refused_naming_the_field(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_job(_broken(path, value), base=Path("."))


def test_a_job_needs_exactly_one_storage_section() -> None:
    spec = _spec(dropbox={"endpoints": []})

    with pytest.raises(ConfigError, match=r"exactly one storage section.*swift, dropbox"):
        parse_job(spec, base=Path("."))


def test_endpoints_must_agree_with_the_parties_the_schema_declares() -> None:
    spec = _spec()
    spec["config"]["schema"] = {
        "tables": {"employees": {**SCHEMA["tables"]["employees"], "parties": ["acme", "initech"]}}
    }

    with pytest.raises(ConfigError, match="held by acme, initech, but the endpoints give acme, globex"):
        parse_job(spec, base=Path("."))


def test_a_schema_with_several_tables_needs_each_endpoint_to_name_its_relation() -> None:
    spec = _spec()
    spec["config"]["schema"] = {"tables": {**SCHEMA["tables"], "offices": SCHEMA["tables"]["employees"]}}

    with pytest.raises(ConfigError, match=r'name the schema table with "relation"; .* employees, offices'):
        parse_job(spec, base=Path("."))


def test_a_job_file_that_is_not_json_is_refused_with_the_position(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text('{"protocol": }')

    with pytest.raises(ConfigError, match=r"not valid JSON .* line 1, column 14"):
        load_job(tmp_path / "job.json")
