"""How a value that does not fit a wire model is reported: a :class:`WireError` naming the field.

Every model in ``wire`` is checked by pydantic; this turns pydantic's error list into one
line, ``runs.0.status: Input should be 'pending', ...``, so whoever reads it knows which
field of which answer was wrong.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from confide._errors import WireError

__all__ = ["field_error", "validate_as"]

T = TypeVar("T")
_ADAPTERS: dict[object, TypeAdapter[Any]] = {}  # one per shape: building one costs a schema


def field_error(exc: ValidationError) -> str:
    """The first validation error as ``field.path: what is wrong``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    return f"{where}: {err['msg']}"


def validate_as(shape: type[T], data: object, *, what: str) -> T:
    """Check decoded JSON ``data`` against ``shape`` (a model, or ``list[Model]``).

    Raises
    ------
    WireError
        ``"<what> is malformed: <field>: <problem>"`` when it does not fit.
    """
    try:
        found: T = _adapter(shape).validate_python(data)
    except ValidationError as exc:
        raise WireError(f"{what} is malformed: {field_error(exc)}") from None
    return found


def _adapter(shape: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(shape)
    if adapter is None:
        adapter = _ADAPTERS[shape] = TypeAdapter(shape)
    return adapter
