"""``confide provision``: a consortium description becomes CA, kits and hub seed (``_provision``)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from confide._errors import ConfigError
from confide.crypto import (
    CertificateAuthority,
    PartyIdentity,
    PublicParty,
    Role,
    verify_party_certificate,
)
from confide.kit import ConsortiumSpec, Kit, provision, provision_spec

from .conftest import CONSORTIUM_YAML, NODES, RESEARCHERS, write_spec

KIT_FILES = ["ca.crt", "cert.pem", "kit.yaml", "sealing.key", "signing.key"]
MINIMAL_YAML = """\
consortium: tiny
organisations: [{id: org-a}]
nodes: [{id: node-a, organisation: org-a}]
researchers: [{id: alice, organisation: org-a}]
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


# -- layout -----------------------------------------------------------------------------------


def test_provision_creates_the_documented_layout(provisioned: Path) -> None:
    top = sorted(p.name for p in provisioned.iterdir())

    assert top == ["ca", "hub", "nodes", "researchers"]
    assert sorted(p.name for p in (provisioned / "ca").iterdir()) == ["ca.crt", "ca.key"]
    assert sorted(p.name for p in (provisioned / "hub").iterdir()) == [
        "ca.crt",
        "hub.yaml",
        "seed.json",
        "tls.crt",
        "tls.key",
    ]
    assert sorted(p.name for p in (provisioned / "nodes").iterdir()) == list(NODES)
    assert sorted(p.name for p in (provisioned / "researchers").iterdir()) == list(RESEARCHERS)
    for kit_dir in [provisioned / "nodes" / n for n in NODES] + [
        provisioned / "researchers" / r for r in RESEARCHERS
    ]:
        assert sorted(p.name for p in kit_dir.iterdir()) == KIT_FILES


def test_private_files_are_readable_by_the_owner_only(provisioned: Path) -> None:
    private = [provisioned / "ca" / "ca.key", provisioned / "hub" / "tls.key"]
    for kit_dir in [*(provisioned / "nodes").iterdir(), *(provisioned / "researchers").iterdir()]:
        private += [kit_dir / "signing.key", kit_dir / "sealing.key", kit_dir / "kit.yaml"]

    modes = {str(p.relative_to(provisioned)): _mode(p) for p in private}

    assert modes == dict.fromkeys(modes, 0o600)
    assert len(modes) == 2 + 3 * (len(NODES) + len(RESEARCHERS))


@pytest.mark.parametrize(
    ("folder", "party_id", "organisation", "role"),
    [
        ("nodes", "node-a", "org-a", Role.NODE),
        ("nodes", "node-b", "org-b", Role.NODE),
        ("researchers", "alice", "org-r", Role.RESEARCHER),
    ],
)
def test_each_kit_loads_and_its_certificate_verifies_against_the_ca(
    provisioned: Path, folder: str, party_id: str, organisation: str, role: Role
) -> None:
    ca = CertificateAuthority.load(provisioned / "ca")

    kit = Kit.load(provisioned / folder / party_id)

    certified = verify_party_certificate(
        kit.certificate_pem, ca.certificate, expected_id=party_id, expected_role=role
    )
    assert certified == kit.public
    assert (kit.party_id, kit.identity.organisation, kit.identity.role) == (
        party_id,
        organisation,
        role,
    )
    assert kit.consortium == "acme"
    assert kit.hub_url == "https://hub.acme.example:8443"
    assert kit.ca == ca.certificate
    assert len(kit.token) >= 32


def test_kits_get_distinct_keys_and_tokens(provisioned: Path) -> None:
    kits = [Kit.load(provisioned / "nodes" / n) for n in NODES] + [
        Kit.load(provisioned / "researchers" / "alice")
    ]

    fingerprints = {k.public.fingerprint for k in kits}
    tokens = {k.token for k in kits}

    assert len(fingerprints) == len(tokens) == len(kits)


def test_seed_holds_token_hashes_and_certificates_never_tokens(provisioned: Path) -> None:
    seed_text = (provisioned / "hub" / "seed.json").read_text()
    seed = json.loads(seed_text)
    ca = CertificateAuthority.load(provisioned / "ca")

    for folder, role in (("nodes", Role.NODE), ("researchers", Role.RESEARCHER)):
        for entry in seed[folder]:
            kit = Kit.load(provisioned / folder / entry["id"])
            assert entry["token_hash"] == hashlib.sha256(kit.token.encode()).hexdigest()
            assert kit.token not in seed_text
            cert_pem = base64.b64decode(entry["certificate"])
            assert cert_pem == kit.certificate_pem
            assert (
                verify_party_certificate(
                    cert_pem, ca.certificate, expected_id=entry["id"], expected_role=role
                )
                == kit.public
            )
            assert entry["organisation"] == kit.identity.organisation
    assert [n["id"] for n in seed["nodes"]] == list(NODES)
    assert [r["id"] for r in seed["researchers"]] == list(RESEARCHERS)


def test_seed_lists_organisations_and_collaborations(provisioned: Path) -> None:
    seed = json.loads((provisioned / "hub" / "seed.json").read_text())

    assert seed["organisations"] == [
        {"id": "org-a", "name": "Hospital A"},
        {"id": "org-b", "name": "org-b"},
        {"id": "org-r", "name": "University"},
    ]
    assert seed["collaborations"] == [
        {
            "id": "diabetes",
            "name": "Diabetes study",
            "nodes": ["node-a", "node-b"],
            "researchers": ["alice"],
        }
    ]


def test_hub_settings_point_at_the_seed(provisioned: Path) -> None:
    settings = yaml.safe_load((provisioned / "hub" / "hub.yaml").read_text())

    assert settings == {
        "host": "0.0.0.0",
        "port": 8443,
        "database_url": "sqlite:///hub.db",
        "seed_file": "seed.json",
        "grpc_port": 8444,
        "tls_cert": "tls.crt",
        "tls_key": "tls.key",
        "insecure": False,
    }


def test_hub_gets_the_ca_and_a_tls_certificate_for_its_hostnames(provisioned: Path) -> None:
    ca_pem = (provisioned / "ca" / "ca.crt").read_bytes()
    tls = x509.load_pem_x509_certificate((provisioned / "hub" / "tls.crt").read_bytes())

    sans = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert (provisioned / "hub" / "ca.crt").read_bytes() == ca_pem
    assert sans.get_values_for_type(x509.DNSName) == ["hub.acme.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert tls.issuer == x509.load_pem_x509_certificate(ca_pem).subject


def test_kit_yaml_holds_the_documented_fields(provisioned: Path) -> None:
    meta = yaml.safe_load((provisioned / "nodes" / "node-b" / "kit.yaml").read_text())

    assert set(meta) == {"consortium", "party_id", "organisation", "role", "hub_url", "hub_grpc", "token"}
    assert (meta["party_id"], meta["organisation"], meta["role"]) == ("node-b", "org-b", "node")


def test_default_hub_is_local_https_with_grpc_next_door(tmp_path: Path) -> None:
    out = provision(write_spec(tmp_path, MINIMAL_YAML), tmp_path / "out")

    settings = yaml.safe_load((out / "hub" / "hub.yaml").read_text())
    kit = Kit.load(out / "researchers" / "alice")

    assert (settings["host"], settings["port"], settings["grpc_port"]) == ("127.0.0.1", 8700, 8701)
    assert (settings["tls_cert"], settings["tls_key"], settings["insecure"]) == ("tls.crt", "tls.key", False)
    assert (kit.hub_url, kit.hub_grpc) == ("https://127.0.0.1:8700", "127.0.0.1:8701")


def test_an_http_hub_url_is_written_as_an_explicitly_insecure_hub(tmp_path: Path) -> None:
    text = MINIMAL_YAML + "hub: {url: 'http://127.0.0.1:9000'}\n"
    out = provision(write_spec(tmp_path, text), tmp_path / "out")

    assert yaml.safe_load((out / "hub" / "hub.yaml").read_text())["insecure"] is True


def test_provision_spec_accepts_a_parsed_description(tmp_path: Path) -> None:
    spec = ConsortiumSpec.model_validate(yaml.safe_load(MINIMAL_YAML))

    out = provision_spec(spec, tmp_path / "deep" / "out")

    assert out == tmp_path / "deep" / "out"
    assert Kit.load(out / "nodes" / "node-a").consortium == "tiny"


def test_provision_into_an_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()

    provision(write_spec(tmp_path, MINIMAL_YAML), tmp_path / "out")

    assert (tmp_path / "out" / "nodes" / "node-a" / "kit.yaml").is_file()
    assert _siblings(tmp_path / "out") == ["consortium.yaml", "out"]


# -- refused descriptions ---------------------------------------------------------------------


def _replace(old: str, new: str) -> str:
    assert old in CONSORTIUM_YAML
    return CONSORTIUM_YAML.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_replace("  - {id: org-b}\n", "  - {id: org-b\n"), r"is not valid YAML at line \d+"),
        ("- just\n- a list\n", "must hold a mapping of settings, not list"),
        (
            _replace("{id: node-b, organisation: org-b}", "{id: node-b, organisation: org-z}"),
            "node-b names unknown organisation 'org-z'",
        ),
        (
            _replace("nodes: [node-a, node-b]", "nodes: [node-a, node-c]"),
            "collaboration diabetes names unknown node 'node-c'",
        ),
        (
            _replace("researchers: [alice]", "researchers: [bob]"),
            "collaboration diabetes names unknown researcher 'bob'",
        ),
        (
            _replace("{id: node-b, organisation: org-b}", "{id: node-a, organisation: org-b}"),
            "duplicate party id",
        ),
        (
            _replace("{id: alice, organisation: org-r}", "{id: node-a, organisation: org-r}"),
            "duplicate party id.*node-a",
        ),
        (_replace("  - {id: org-b}\n", "  - {id: org-a}\n"), "duplicate organisation id.*org-a"),
        (
            _replace("{id: alice, organisation: org-r}", "{id: hub, organisation: org-r}"),
            "'hub' is reserved",
        ),
        (
            _replace("url: https://hub.acme.example:8443", "url: ftp://hub.acme.example"),
            "hub.url must look like https://HOST\\[:PORT\\], got 'ftp://hub.acme.example'",
        ),
        (
            _replace("consortium: acme", "consortium: Acme Corp"),
            "consortium: String should match pattern",
        ),
        (
            _replace("{id: node-b, organisation: org-b}", "{id: node-b, organisation: org-b, extra: 1}"),
            r"nodes\.1\.extra: Extra inputs are not permitted",
        ),
        (
            "consortium: acme\norganisations: []\nnodes: []\nresearchers: []\n",
            "organisations: List should have at least 1",
        ),
    ],
    ids=[
        "malformed-yaml",
        "not-a-mapping",
        "unknown-organisation",
        "unknown-node",
        "unknown-researcher",
        "duplicate-node",
        "duplicate-across-roles",
        "duplicate-organisation",
        "reserved-hub",
        "bad-url-scheme",
        "bad-id",
        "unknown-field",
        "empty-lists",
    ],
)
def test_bad_description_is_a_config_error_and_writes_nothing(
    tmp_path: Path, text: str, problem: str
) -> None:
    spec = write_spec(tmp_path, text)

    with pytest.raises(ConfigError, match=problem) as info:
        provision(spec, tmp_path / "out")

    assert str(spec) in str(info.value)
    assert _siblings(tmp_path / "out") == ["consortium.yaml"]


def test_malformed_yaml_names_the_right_line(tmp_path: Path) -> None:
    lines = CONSORTIUM_YAML.splitlines(keepends=True)
    broken_at = next(i for i, line in enumerate(lines) if "org-b}" in line)
    lines[broken_at] = "  - {id: org-b\n"
    spec = write_spec(tmp_path, "".join(lines))

    with pytest.raises(ConfigError, match="not valid YAML at line") as info:
        provision(spec, tmp_path / "out")

    line = int(str(info.value).split("at line ")[1].split(",")[0])
    assert broken_at + 1 <= line <= broken_at + 2


def test_missing_description_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"consortium file .*nowhere\.yaml does not exist"):
        provision(tmp_path / "nowhere.yaml", tmp_path / "out")

    assert not (tmp_path / "out").exists()


# -- never a partial or clobbered output ------------------------------------------------------


def test_non_empty_output_is_refused_without_force_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    spec = write_spec(tmp_path, MINIMAL_YAML)

    with pytest.raises(
        ConfigError, match=r"output directory .*out is not empty; choose another or pass --force"
    ):
        provision(spec, out)

    assert _tree(out) == {"precious.txt": b"keep me"}
    assert _siblings(out) == ["consortium.yaml", "out"]


def test_force_replaces_a_previous_output(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, MINIMAL_YAML)
    out = provision(spec, tmp_path / "out")
    old_ca = (out / "ca" / "ca.crt").read_bytes()
    (out / "stale.txt").write_text("from before")

    provision(spec, out, force=True)

    assert not (out / "stale.txt").exists()
    assert (out / "ca" / "ca.crt").read_bytes() != old_ca
    assert Kit.load(out / "nodes" / "node-a").ca == x509.load_pem_x509_certificate(
        (out / "ca" / "ca.crt").read_bytes()
    )
    assert _siblings(out) == ["consortium.yaml", "out"]


def _fail_on_second_issue(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    issued: list[str] = []
    original = CertificateAuthority.issue

    def issue(self: CertificateAuthority, party: PublicParty) -> bytes:
        if issued:
            raise OSError(28, "No space left on device")
        issued.append(party.party_id)
        return original(self, party)

    monkeypatch.setattr(CertificateAuthority, "issue", issue)
    return issued


@pytest.mark.parametrize(
    "prepare",
    [lambda out: None, lambda out: out.mkdir()],
    ids=["absent", "empty"],
)
def test_failure_midway_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepare: Callable[[Path], None]
) -> None:
    out = tmp_path / "out"
    prepare(out)
    before = out.exists()
    issued = _fail_on_second_issue(monkeypatch)

    with pytest.raises(OSError, match="No space left"):
        provision(write_spec(tmp_path, CONSORTIUM_YAML), out)

    assert issued == ["node-a"]
    assert out.exists() == before
    assert not out.exists() or not any(out.iterdir())
    assert _siblings(out) == (["consortium.yaml", "out"] if before else ["consortium.yaml"])


def test_failure_midway_with_force_keeps_the_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path, CONSORTIUM_YAML)
    out = provision(spec, tmp_path / "out")
    before = _tree(out)
    _fail_on_second_issue(monkeypatch)

    with pytest.raises(OSError, match="No space left"):
        provision(spec, out, force=True)

    assert _tree(out) == before
    assert _siblings(out) == ["consortium.yaml", "out"]


def test_failure_in_key_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: PartyIdentity, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "signing.key").write_bytes(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(PartyIdentity, "save", broken_save)

    with pytest.raises(KeyboardInterrupt):
        provision(write_spec(tmp_path, MINIMAL_YAML), tmp_path / "out")

    assert _siblings(tmp_path / "out") == ["consortium.yaml"]


def test_empty_hub_hostnames_is_a_config_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, MINIMAL_YAML + "hub: {hostnames: []}\n")

    with pytest.raises(ConfigError, match="hostnames"):
        provision(spec, tmp_path / "out")


def test_hub_url_with_an_invalid_port_is_a_config_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, MINIMAL_YAML + "hub: {url: 'http://hub.example:99999'}\n")

    with pytest.raises(ConfigError, match=r"hub\.url"):
        provision(spec, tmp_path / "out")
