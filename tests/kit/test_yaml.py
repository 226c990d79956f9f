"""YAML/JSON into pydantic models, with errors naming file and field (``confide.kit._yaml``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from confide._errors import ConfigError
from confide.kit import describe_validation_error, load_model


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    inner: Inner
    tags: list[str] = Field(default_factory=list)


def test_yaml_file_loads_into_the_model(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\ninner: {port: 8}\ntags: [a, b]\n")

    settings = load_model(path, Settings, "settings")

    assert settings == Settings(name="x", inner=Inner(port=8), tags=["a", "b"])


def test_json_file_loads_into_the_model(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"name": "x", "inner": {"port": 8}}')

    settings = load_model(path, Settings, "settings")

    assert settings == Settings(name="x", inner=Inner(port=8))


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match=r"settings file .*absent\.yaml does not exist"):
        load_model(path, Settings, "settings")


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_model(tmp_path, Settings, "settings")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\ninner:\n  port: 8\n tags: [a\n")

    with pytest.raises(ConfigError, match=r"s\.yaml is not valid YAML at line 4, column \d+") as info:
        load_model(path, Settings, "settings")

    assert str(path) in str(info.value)


def test_malformed_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"name": ')

    with pytest.raises(ConfigError, match="is not valid"):
        load_model(path, Settings, "settings")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("", "NoneType")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=f"must hold a mapping of settings, not {kind}"):
        load_model(path, Settings, "settings")


def test_validation_error_names_file_and_field_path(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\ninner: {port: eight}\n")

    with pytest.raises(
        ConfigError, match=r"settings file .*s\.yaml: inner\.port: Input should be a valid integer"
    ):
        load_model(path, Settings, "settings")


def test_describe_validation_error_lists_at_most_five_problems() -> None:
    class Many(BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int
        f: int
        g: int

    with pytest.raises(ValidationError) as info:
        Many.model_validate({})

    text = describe_validation_error(info.value)

    assert text.split("; ") == [
        "a: Field required",
        "b: Field required",
        "c: Field required",
        "d: Field required",
        "e: Field required",
        "and 2 more",
    ]


def test_describe_validation_error_names_the_top_level() -> None:
    class Checked(BaseModel):
        def model_post_init(self, _: object) -> None:
            raise ValueError("inconsistent")

    with pytest.raises(ValidationError) as info:
        Checked.model_validate({})

    assert describe_validation_error(info.value).startswith("(top level): ")


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: \xff\xfe\n")

    with pytest.raises(ConfigError, match=r"s\.yaml"):
        load_model(path, Settings, "settings")
