"""Reading sqlglot's tree for the SQL front end: names as the schema spells them, and where a node stands.

Where it sits: under :mod:`._sql`, :mod:`._sql_from` and :mod:`._sql_expr`, which translate
a parsed statement into the IR; these small readers are what all three share. Error
messages quote the offending SQL (:func:`snippet`) and say where it is (:func:`at`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

__all__ = ["at", "name_of", "operands", "snippet", "unparen", "used"]


def used(node: exp.Expr) -> set[str]:
    """The arguments ``node`` sets (sqlglot keeps unset ones as None or False)."""
    return {key for key, value in node.args.items() if value}


def name_of(identifier: exp.Expr) -> str:
    """An identifier as the schema spells it: folded to lower case unless quoted."""
    text = str(identifier.this)
    return text if identifier.args.get("quoted") else text.lower()


def unparen(node: exp.Expr) -> exp.Expr:
    """``node`` without the parentheses around it."""
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def snippet(node: exp.Expr) -> str:
    """``node`` as SQL, cut to 60 characters, for an error message."""
    text = node.sql(dialect="postgres")
    return text if len(text) <= 60 else text[:57] + "..."


def at(node: exp.Expr) -> str:
    """`` at line L, col C``: where ``node``'s first token starts, when sqlglot recorded it."""
    tokens = [n.meta for n in node.walk() if "line" in n.meta and "start" in n.meta]
    if not tokens:
        return ""
    first = min(tokens, key=lambda meta: int(meta["start"]))
    return f" at line {first['line']}, col {int(first['col']) - (int(first['end']) - int(first['start']))}"


def operands(node: exp.Expr, kind: type[exp.Expr]) -> Iterator[exp.Expr]:
    """The operands of ``a AND (b AND c)`` (for ``kind`` And) as ``a, b, c``."""
    inner = unparen(node)
    if not isinstance(inner, kind):
        yield node
        return
    for side in (inner.this, inner.expression):
        yield from operands(side, kind)
