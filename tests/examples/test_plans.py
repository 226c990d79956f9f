"""Each worked example's SQL and its Conclave-style DSL program compile to the same plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from confide.query import compile_plan, load_schema, parse_sql
from tests.examples.conftest import EXAMPLES, load, text

# example -> the DSL function that builds what query.sql says
PROGRAMS = {"brain_volume": "build", "pay_gap": "build", "market_share": "shares"}


@pytest.mark.parametrize("example", sorted(PROGRAMS))
def test_sql_and_dsl_compile_to_the_same_plan(example: str) -> None:
    federation = load_schema(EXAMPLES / example / "schema.yaml")
    program = getattr(load(example, "query"), PROGRAMS[example])()

    from_sql = compile_plan(parse_sql(text(example, "query.sql"), federation), federation)
    from_dsl = compile_plan(program.relation, program.schema)

    assert program.schema == federation  # the DSL declares the schema.yaml's tables
    assert from_dsl == from_sql
    assert from_dsl.explain() == from_sql.explain()


@pytest.mark.parametrize("example", sorted(PROGRAMS))
def test_the_generated_files_are_declared_as_the_schema_says(example: str, tmp_path: Path) -> None:
    generate = load(example, "generate")
    federation = load_schema(EXAMPLES / example / "schema.yaml")
    [(table, declared)] = federation.tables.items()

    for index, node in enumerate(declared.parties):
        (tmp_path / node).mkdir()
        [entry] = generate.write(node, index, tmp_path / node, 10)

        assert entry["name"] == table
        assert entry["columns"] == {c: s.type.value for c, s in declared.columns.items()}
        assert (tmp_path / node / entry["path"]).is_file()
