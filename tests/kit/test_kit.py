"""Loading and self-checking one party's kit (``confide.kit._kit``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from confide._errors import ConfigError, KeyFileError
from confide.crypto import CertificateAuthority, Role
from confide.kit import Kit, KitFile, provision, token_hash

from .conftest import write_spec


def _edit_kit_yaml(kit_dir: Path, **changes: object) -> None:
    path = kit_dir / "kit.yaml"
    meta = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    path.write_text(yaml.safe_dump(meta))


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert token_hash("secret-token") == hashlib.sha256(b"secret-token").hexdigest()


def test_load_accepts_the_kit_yaml_path_too(provisioned: Path) -> None:
    kit_dir = provisioned / "nodes" / "node-a"

    by_dir, by_file = Kit.load(kit_dir), Kit.load(kit_dir / "kit.yaml")

    assert by_dir.public == by_file.public
    assert (by_dir.directory, by_dir.token) == (by_file.directory, by_file.token)
    assert by_dir.directory == kit_dir


def test_load_accepts_a_string_path(provisioned: Path) -> None:
    kit = Kit.load(str(provisioned / "researchers" / "alice"))

    assert kit.party_id == "alice"
    assert kit.identity.role is Role.RESEARCHER


def test_trailing_slash_of_the_hub_url_is_dropped(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    _edit_kit_yaml(kit_dir, hub_url="https://hub.acme.example:8443/")

    kit = Kit.load(kit_dir)

    assert kit.hub_url == "https://hub.acme.example:8443"


def test_missing_kit_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"kit directory .*absent does not exist; create kits with 'confide provision'",
    ):
        Kit.load(tmp_path / "absent")


@pytest.mark.parametrize("field", ["consortium", "party_id", "organisation", "role", "hub_url", "token"])
def test_kit_yaml_missing_a_field_names_it(kits: Path, field: str) -> None:
    kit_dir = kits / "nodes" / "node-a"
    _edit_kit_yaml(kit_dir, **{field: None})

    with pytest.raises(ConfigError, match=f"kit file .*kit.yaml: {field}: Field required"):
        Kit.load(kit_dir)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"token": "short"}, "token: String should have at least 16 characters"),
        ({"role": "admin"}, "role: Input should be 'node', 'researcher' or 'hub'"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
    ids=["short-token", "unknown-role", "unknown-field"],
)
def test_kit_yaml_with_bad_values_names_the_field(
    kits: Path, changes: dict[str, object], problem: str
) -> None:
    kit_dir = kits / "nodes" / "node-a"
    _edit_kit_yaml(kit_dir, **changes)

    with pytest.raises(ConfigError, match=problem):
        Kit.load(kit_dir)


def test_kit_without_kit_yaml_is_a_config_error(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    (kit_dir / "kit.yaml").unlink()

    with pytest.raises(ConfigError, match=r"kit file .*kit\.yaml does not exist"):
        Kit.load(kit_dir)


@pytest.mark.parametrize("missing", ["cert.pem", "ca.crt"])
def test_kit_without_a_certificate_is_incomplete(kits: Path, missing: str) -> None:
    kit_dir = kits / "nodes" / "node-a"
    (kit_dir / missing).unlink()

    with pytest.raises(ConfigError, match=f"kit .* is incomplete: .*{missing} missing"):
        Kit.load(kit_dir)


def test_kit_without_a_key_names_the_key_file(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    (kit_dir / "signing.key").unlink()

    with pytest.raises(KeyFileError, match=r"cannot read key file .*signing\.key"):
        Kit.load(kit_dir)


@pytest.mark.parametrize("key_file", ["signing.key", "sealing.key"])
def test_keys_of_another_kit_do_not_match_the_certificate(kits: Path, key_file: str) -> None:
    kit_dir = kits / "nodes" / "node-a"
    shutil.copy(kits / "nodes" / "node-b" / key_file, kit_dir / key_file)

    with pytest.raises(
        ConfigError, match="the keys do not match the certificate; the kit is corrupt or mixed up"
    ):
        Kit.load(kit_dir)


def test_all_keys_swapped_with_another_kit_do_not_match(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    for key_file in ("signing.key", "sealing.key"):
        shutil.copy(kits / "researchers" / "alice" / key_file, kit_dir / key_file)

    with pytest.raises(ConfigError, match="do not match the certificate"):
        Kit.load(kit_dir)


def test_certificate_of_another_party_is_refused(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    shutil.copy(kits / "nodes" / "node-b" / "cert.pem", kit_dir / "cert.pem")

    with pytest.raises(ConfigError, match="expected a certificate for 'node-a' but got one for 'node-b'"):
        Kit.load(kit_dir)


def test_role_in_kit_yaml_must_match_the_certificate(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    _edit_kit_yaml(kit_dir, role="researcher")

    with pytest.raises(ConfigError, match="'node-a' is certified as a node, not a researcher"):
        Kit.load(kit_dir)


def test_organisation_in_kit_yaml_must_match_the_certificate(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    _edit_kit_yaml(kit_dir, organisation="org-b")

    with pytest.raises(ConfigError, match="do not match the certificate"):
        Kit.load(kit_dir)


def test_certificate_from_another_consortiums_ca_is_refused(tmp_path: Path, kits: Path) -> None:
    other = provision(write_spec(tmp_path, _other_consortium()), tmp_path / "other")
    kit_dir = kits / "nodes" / "node-a"
    shutil.copy(other / "nodes" / "node-a" / "cert.pem", kit_dir / "cert.pem")

    with pytest.raises(ConfigError, match="'node-a' was not issued by the consortium CA"):
        Kit.load(kit_dir)


def test_certificate_for_the_same_keys_from_a_lookalike_ca_is_refused(kits: Path) -> None:
    kit_dir = kits / "nodes" / "node-a"
    public = Kit.load(kit_dir).public
    lookalike = CertificateAuthority.create("acme")
    (kit_dir / "cert.pem").write_bytes(lookalike.issue(public))

    with pytest.raises(ConfigError, match="does not verify against the consortium CA"):
        Kit.load(kit_dir)


def test_whole_kit_from_another_consortium_still_loads_as_that_consortium(tmp_path: Path, kits: Path) -> None:
    other = provision(write_spec(tmp_path, _other_consortium()), tmp_path / "other")

    kit = Kit.load(other / "nodes" / "node-a")

    assert kit.consortium == "other"
    assert kit.ca != Kit.load(kits / "nodes" / "node-a").ca


def test_kit_file_model_requires_a_long_token() -> None:
    with pytest.raises(ValueError, match="token"):
        KitFile(
            consortium="c",
            party_id="p",
            organisation="o",
            role=Role.NODE,
            hub_url="http://h",
            token="x",
        )


def _other_consortium() -> str:
    return """\
consortium: other
organisations: [{id: org-a}]
nodes: [{id: node-a, organisation: org-a}]
researchers: [{id: alice, organisation: org-a}]
"""
