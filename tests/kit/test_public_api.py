"""The names ``confide.kit`` exports are its public API; changing them is deliberate."""

from __future__ import annotations

import confide.kit


def test_exported_names_are_pinned() -> None:
    exported = set(confide.kit.__all__)

    assert exported == {
        "ConsortiumSpec",
        "Kit",
        "KitFile",
        "describe_validation_error",
        "load_model",
        "provision",
        "provision_spec",
        "token_hash",
    }
    assert all(hasattr(confide.kit, name) for name in exported)
