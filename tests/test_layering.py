"""The package order in docs/architecture.md is the law: no upward import, no reach into a private module.

Every ``import`` and ``from ... import`` in ``src/confide`` (module level, inside functions
and under ``TYPE_CHECKING`` alike) is read with :mod:`ast`; nothing is imported. A package
may import only the packages listed above it in the document's package list, and of them
only public modules (no ``_private`` module of another package). ``_errors`` and
``_version`` sit below everything.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "confide"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
BASE = ("_errors", "_version")  # the exception tree and the version: below every package
ALLOWED: frozenset[str] = frozenset()  # "path:line -> target" exceptions; keep it empty


@dataclass(frozen=True)
class Import:
    """One import of another part of confide."""

    where: str
    source: str
    target: tuple[str, ...]


def documented_order() -> list[str]:
    """The package list of docs/architecture.md, lowest first."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Packages, in dependency order", 1)[1]
    block = section.split("```", 2)[1]
    return [*BASE, *(m.group(1) for line in block.splitlines() if (m := re.match(r"^(\w+)\s", line)))]


def _module_parts(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def confide_imports() -> list[Import]:
    """Every import of ``confide.<something>`` from a module of another top-level part."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_parts(path)
        source = module[1] if len(module) > 1 else "__init__"
        package = module if path.name == "__init__.py" else module[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    targets = [[*base, *(node.module or "").split(".")]]
                else:
                    targets = [(node.module or "").split(".")]
            elif isinstance(node, ast.Import):
                targets = [alias.name.split(".") for alias in node.names]
            else:
                continue
            for target in targets:
                target = [t for t in target if t]
                if target[:1] == ["confide"] and len(target) > 1 and target[1] != source:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.append(Import(where, source, tuple(target[1:])))
    return found


def test_the_documented_order_names_every_package() -> None:
    order = documented_order()
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}

    assert packages - set(order) == set(), "packages missing from docs/architecture.md's list"
    assert set(order) - set(BASE) - packages == set(), "docs/architecture.md lists packages that do not exist"


def test_no_package_imports_one_above_it() -> None:
    order = documented_order()
    rank = {name: i for i, name in enumerate(order)}
    top = len(order)  # the root module and __main__ sit above everything

    upward = [
        f"{i.where} ({i.source}) -> confide.{'.'.join(i.target)}"
        for i in confide_imports()
        if rank.get(i.target[0], top) > rank.get(i.source, top) and i.where not in ALLOWED
    ]

    assert upward == []


def test_no_package_imports_another_packages_private_module() -> None:
    private = [
        f"{i.where} -> confide.{'.'.join(i.target)}"
        for i in confide_imports()
        if any(part.startswith("_") and not part.startswith("__") for part in i.target[1:])
    ]

    assert [p for p in private if p.split(" -> ")[0] not in ALLOWED] == []


def test_the_root_docstring_lists_the_packages_in_the_documented_order() -> None:
    import confide

    listed = [
        m.group(1) for line in (confide.__doc__ or "").splitlines() if (m := re.match(r"^    (\w+)\s", line))
    ]

    assert listed == [p for p in documented_order() if p not in BASE]
