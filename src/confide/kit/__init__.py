"""Consortium provisioning and party kits (keys, certificate, CA, hub URL, credential).

- ``_provision``: ``confide provision consortium.yaml --out kits/``
- ``_kit``: load and self-check one party's kit
- ``_yaml``: YAML/JSON into pydantic models with errors naming file and field
"""

from confide.kit._kit import Kit, KitFile, token_hash
from confide.kit._provision import ConsortiumSpec, provision, provision_spec
from confide.kit._yaml import describe_validation_error, load_model

__all__ = [
    "ConsortiumSpec",
    "Kit",
    "KitFile",
    "describe_validation_error",
    "load_model",
    "provision",
    "provision_spec",
    "token_hash",
]
