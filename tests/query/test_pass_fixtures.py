"""Each compiler pass against input / expected fixtures, as sqlglot's ``tests/fixtures/optimizer/``.

``fixtures/<pass>.txt`` holds cases separated by blank lines. A case is a ``# title`` line,
the input query as SQL over ``fixtures/schema.yaml``, a ``----`` line, and what is expected
after the pass: the relation as an indented tree (root first, inputs below, as
:func:`_tree` renders it); for ``resolve``, which returns the tree unchanged, the columns
it types; for ``place``, :meth:`Plan.explain`. A pass runs on the tree the passes before it
in ``RULES`` made. ``QueryError: text`` expects a refusal whose message starts with text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from confide.query import FederationSchema, QueryError, load_schema, parse_sql
from confide.query._columns import ColumnInfo, output_columns
from confide.query._ir import Relation, children, describe
from confide.query.passes import RULES, place
from confide.query.passes.push_down import push_down
from confide.query.passes.resolve import resolve
from confide.query.passes.rewrite_aggregates import rewrite_aggregates

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = load_schema(FIXTURES / "schema.yaml")


@dataclass(frozen=True)
class Case:
    title: str
    sql: str
    expected: str


def _cases(name: str) -> Iterator[Case]:
    for block in (FIXTURES / f"{name}.txt").read_text().strip().split("\n\n"):
        title, rest = block.split("\n", 1)
        sql, expected = rest.split("\n----\n")
        assert title.startswith("# "), f"{name}.txt: a case starts with '# title', not {title!r}"
        yield Case(title.removeprefix("# "), sql, expected)


def _params(name: str) -> list[pytest.ParameterSet]:
    return [pytest.param(case, id=case.title) for case in _cases(name)]


def _tree(relation: Relation, depth: int = 0) -> str:
    lines = ["  " * depth + describe(relation)]
    lines += [_tree(child, depth + 1) for child in children(relation)]
    return "\n".join(lines)


def _column(name: str, info: ColumnInfo) -> str:
    text = f"{name}: {info.type.value}"
    if info.domain is not None and info.domain.categories is not None:
        text += " in {" + ", ".join(map(str, info.domain.categories)) + "}"
    if info.domain is not None and info.domain.bins is not None:
        text += " binned " + ", ".join(f"{edge:g}" for edge in info.domain.bins)
    if info.bounds is not None:
        text += f" bounds [{info.bounds[0]:g}, {info.bounds[1]:g}]"
    return text + (" aggregated" if info.aggregated else "")


def _before(rule: Callable[[Relation, FederationSchema], Relation], sql: str) -> Relation:
    """The parsed query after every rule before ``rule``."""
    relation: Relation = parse_sql(sql, SCHEMA)
    for earlier in RULES[: RULES.index(rule)]:
        relation = earlier(relation, SCHEMA)
    return relation


def _outcome(run: Callable[[], str]) -> str:
    try:
        return run()
    except QueryError as refusal:
        return f"QueryError: {refusal}"


def _check(outcome: str, expected: str) -> None:
    if expected.startswith("QueryError: "):
        assert outcome.startswith(expected), outcome
    else:
        assert outcome == expected


@pytest.mark.parametrize("case", _params("resolve"))
def test_resolve(case: Case) -> None:
    relation = _before(resolve, case.sql)

    def run() -> str:
        assert resolve(relation, SCHEMA) is relation
        return "\n".join(_column(n, c) for n, c in output_columns(relation, SCHEMA).items())

    _check(_outcome(run), case.expected)


@pytest.mark.parametrize("case", _params("push_down"))
def test_push_down(case: Case) -> None:
    relation = _before(push_down, case.sql)

    _check(_outcome(lambda: _tree(push_down(relation, SCHEMA))), case.expected)


@pytest.mark.parametrize("case", _params("rewrite_aggregates"))
def test_rewrite_aggregates(case: Case) -> None:
    relation = _before(rewrite_aggregates, case.sql)

    _check(_outcome(lambda: _tree(rewrite_aggregates(relation, SCHEMA))), case.expected)


@pytest.mark.parametrize("case", _params("place"))
def test_place(case: Case) -> None:
    relation: Relation = parse_sql(case.sql, SCHEMA)
    for rule in RULES:
        relation = rule(relation, SCHEMA)

    _check(_outcome(lambda: place(relation, SCHEMA).explain()), case.expected)
