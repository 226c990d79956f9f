"""``confide provision``: from a consortium description to a CA, per-party kits and hub seed.

The consortium file names organisations, nodes, researchers and collaborations. The
output directory receives::

    ca/                      the CA key and certificate (keep offline, off the hub)
    hub/seed.json            the directory the hub imports (token hashes, certificates)
    hub/hub.yaml             hub settings pointing at seed.json and a SQLite store
    hub/ca.crt, tls.crt, tls.key
    nodes/<id>/              one kit per node
    researchers/<id>/        one kit per researcher

Nothing is written until the whole description has been checked, and a partly written
output (a crash, a full disk) is never mistaken for a finished one: files go to a
temporary directory that is renamed into place at the end.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide._errors import ConfigError
from confide.crypto import CertificateAuthority, PartyIdentity, Role, write_private_file
from confide.kit._kit import KitFile, token_hash
from confide.kit._yaml import load_model

__all__ = ["ConsortiumSpec", "provision"]

_ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class OrganisationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    name: str = ""


class PartySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    organisation: str


class CollaborationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    name: str = ""
    nodes: list[str] = Field(min_length=1)
    researchers: list[str] = Field(min_length=1)


class HubSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "https://127.0.0.1:8700"
    hostnames: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1)
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="default: the url's port + 1")

    def grpc_target(self) -> str:
        """``host:port`` of the hub's gRPC listener."""
        url = urlparse(self.url)
        port = self.grpc_port or (url.port or (443 if url.scheme == "https" else 80)) + 1
        return f"{url.hostname}:{port}"


class ConsortiumSpec(BaseModel):
    """The consortium description ``confide provision`` reads."""

    model_config = ConfigDict(extra="forbid")

    consortium: str = Field(pattern=_ID)
    hub: HubSpec = Field(default_factory=HubSpec)
    organisations: list[OrganisationSpec] = Field(min_length=1)
    nodes: list[PartySpec] = Field(min_length=1)
    researchers: list[PartySpec] = Field(min_length=1)
    collaborations: list[CollaborationSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> ConsortiumSpec:
        orgs = {o.id for o in self.organisations}
        nodes = {n.id for n in self.nodes}
        researchers = {r.id for r in self.researchers}
        ids = [o.id for o in self.organisations]
        party_ids = [p.id for p in (*self.nodes, *self.researchers)]
        for label, seq in (
            ("organisation", ids),
            ("party", party_ids),
            ("collaboration", [c.id for c in self.collaborations]),
        ):
            dupes = sorted({x for x in seq if seq.count(x) > 1})
            if dupes:
                raise ValueError(f"duplicate {label} id(s): {', '.join(dupes)}")
        if "hub" in party_ids:
            raise ValueError("'hub' is reserved and cannot be a node or researcher id")
        for party in (*self.nodes, *self.researchers):
            if party.organisation not in orgs:
                raise ValueError(f"{party.id} names unknown organisation {party.organisation!r}")
        for collab in self.collaborations:
            for n in collab.nodes:
                if n not in nodes:
                    raise ValueError(f"collaboration {collab.id} names unknown node {n!r}")
            for r in collab.researchers:
                if r not in researchers:
                    raise ValueError(f"collaboration {collab.id} names unknown researcher {r!r}")
        url = urlparse(self.hub.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"hub.url must look like https://HOST[:PORT], got {self.hub.url!r}")
        try:
            _ = url.port
        except ValueError:
            raise ValueError(f"hub.url has an invalid port: {self.hub.url!r}") from None
        return self


def provision(spec_path: Path, out: Path, *, force: bool = False) -> Path:
    """Create the CA, kits and hub seed for the consortium in ``spec_path`` under ``out``."""
    spec = load_model(spec_path, ConsortiumSpec, "consortium")
    return provision_spec(spec, out, force=force)


def provision_spec(spec: ConsortiumSpec, out: Path, *, force: bool = False) -> Path:
    """Like :func:`provision`, from an already parsed description."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} is a file; choose a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"output directory {out} is not empty; choose another or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".provision-", dir=out.parent))
    try:
        _write_all(spec, staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_all(spec: ConsortiumSpec, root: Path) -> None:
    ca = CertificateAuthority.create(spec.consortium)
    ca.save(root / "ca")
    seed: dict[str, list[dict[str, object]]] = {
        "organisations": [{"id": o.id, "name": o.name or o.id} for o in spec.organisations],
        "nodes": [],
        "researchers": [],
        "collaborations": [
            {"id": c.id, "name": c.name or c.id, "nodes": c.nodes, "researchers": c.researchers}
            for c in spec.collaborations
        ],
    }
    for role, parties, folder in (
        (Role.NODE, spec.nodes, "nodes"),
        (Role.RESEARCHER, spec.researchers, "researchers"),
    ):
        for party in parties:
            seed[folder].append(
                _write_kit(spec, ca, role, party.id, party.organisation, root / folder / party.id)
            )
    _write_hub(spec, ca, seed, root / "hub")


def _write_kit(
    spec: ConsortiumSpec,
    ca: CertificateAuthority,
    role: Role,
    party_id: str,
    organisation: str,
    kit_dir: Path,
) -> dict[str, object]:
    """One party's kit (keys, certificate, CA, kit.yaml with its token); its entry in the hub's seed."""
    token = secrets.token_urlsafe(32)
    identity = PartyIdentity.generate(party_id, organisation, role)
    cert = ca.issue(identity.public)
    identity.save(kit_dir)
    (kit_dir / "cert.pem").write_bytes(cert)
    (kit_dir / "ca.crt").write_bytes(ca.certificate_pem)
    meta = KitFile(
        consortium=spec.consortium,
        party_id=party_id,
        organisation=organisation,
        role=role,
        hub_url=spec.hub.url,
        hub_grpc=spec.hub.grpc_target(),
        token=token,
    )
    write_private_file(
        kit_dir / "kit.yaml", yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False).encode()
    )
    return {
        "id": party_id,
        "organisation": organisation,
        "token_hash": token_hash(token),
        "certificate": base64.b64encode(cert).decode(),
    }


def _write_hub(
    spec: ConsortiumSpec, ca: CertificateAuthority, seed: dict[str, list[dict[str, object]]], hub: Path
) -> None:
    """The hub's seed, CA certificate, TLS pair and settings."""
    hub.mkdir()
    (hub / "seed.json").write_text(json.dumps(seed, indent=2))
    (hub / "ca.crt").write_bytes(ca.certificate_pem)
    tls = ca.issue_tls(spec.hub.hostnames)
    write_private_file(hub / "tls.key", tls.key_pem)
    (hub / "tls.crt").write_bytes(tls.cert_pem)
    parsed = urlparse(spec.hub.url)
    settings = {
        "host": "127.0.0.1" if parsed.hostname in ("localhost", "127.0.0.1") else "0.0.0.0",  # noqa: S104
        "port": parsed.port or (443 if parsed.scheme == "https" else 80),
        "database_url": "sqlite:///hub.db",
        "seed_file": "seed.json",
        "grpc_port": int(spec.hub.grpc_target().rsplit(":", 1)[1]),
        "tls_cert": "tls.crt",
        "tls_key": "tls.key",
        "insecure": parsed.scheme == "http",
    }
    (hub / "hub.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
