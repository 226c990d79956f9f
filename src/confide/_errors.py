"""The exception tree of confide: one root, one subclass per layer.

::

    ConfideError
     +-- ConfigError            malformed YAML, kit or settings (names the file and field)
     +-- CryptoError            crypto recipes
     |    +-- KeyFileError        unreadable or malformed key / certificate file
     |    +-- CertificateError    a peer certificate that does not chain to the consortium CA
     |    +-- OpenError           a sealed envelope that must not be opened
     |         +-- WrongRecipientError
     |         +-- TamperedError      header or body altered (AEAD failure)
     |         +-- BadSignatureError  not signed by the claimed sender
     |         +-- ReplayError        message id seen before
     |         +-- StaleMessageError  timestamp outside the freshness window
     +-- WireError              a frame that does not decode
     +-- TransportError         connection to the hub lost or refused
     +-- StoreError             the hub's store
     |    +-- NotFoundError
     |    +-- ConflictError
     +-- AuthError              wrong or forged credentials, not a member, not allowed
     +-- AlgorithmError         unknown algorithm, bad parameters, failing or invalid step
     +-- PolicyError            the node's policy refuses a run
     +-- QueryError             a federated query that does not parse, type-check, or cannot
     |                          be run without revealing more than its aggregates
     +-- ProtocolError          a secure-computation round that cannot complete (too few
     |                          survivors, inconsistent configuration, a misbehaving party)
     +-- TaskError              a task that failed or timed out, as seen by the researcher

Errors say what was wrong, where, and what to do; the CLI and the HTTP API translate
them at the edge and never show a traceback for one of these.
"""

from __future__ import annotations

__all__ = [
    "AlgorithmError",
    "AuthError",
    "BadSignatureError",
    "CertificateError",
    "ConfideError",
    "ConfigError",
    "ConflictError",
    "CryptoError",
    "KeyFileError",
    "NotFoundError",
    "OpenError",
    "PolicyError",
    "ProtocolError",
    "QueryError",
    "ReplayError",
    "StaleMessageError",
    "StoreError",
    "TamperedError",
    "TaskError",
    "TransportError",
    "WireError",
    "WrongRecipientError",
]


class ConfideError(Exception):
    """Root of every error confide raises on purpose."""


class ConfigError(ConfideError):
    """A configuration file, kit or setting is malformed or inconsistent."""


class CryptoError(ConfideError):
    """A crypto recipe failed."""


class KeyFileError(CryptoError):
    """A key or certificate file is missing, unreadable or malformed."""


class CertificateError(CryptoError):
    """A certificate does not chain to the consortium CA or names the wrong party."""


class OpenError(CryptoError):
    """A sealed envelope was refused."""


class WrongRecipientError(OpenError):
    """The envelope is addressed to another party."""


class TamperedError(OpenError):
    """The envelope's header or body was altered after sealing."""


class BadSignatureError(OpenError):
    """The envelope is not signed by the party it claims to come from."""


class ReplayError(OpenError):
    """The envelope's message id was seen before."""


class StaleMessageError(OpenError):
    """The envelope's timestamp lies outside the freshness window."""


class WireError(ConfideError):
    """A frame or message does not decode."""


class TransportError(ConfideError):
    """The connection to the hub failed or was lost."""


class StoreError(ConfideError):
    """The hub's store failed."""


class NotFoundError(StoreError):
    """A requested entity does not exist."""


class ConflictError(StoreError):
    """An entity conflicts with one that exists (duplicate id, finished run)."""


class AuthError(ConfideError):
    """Wrong or forged credentials, or a party acting outside its collaborations."""


class AlgorithmError(ConfideError):
    """Unknown algorithm, invalid parameters, or a failing or invalid algorithm step."""


class PolicyError(ConfideError):
    """The node's policy refuses the run."""


class QueryError(ConfideError):
    """A federated query that is malformed, ill-typed, or unsafe to run (says which operator and why)."""


class ProtocolError(ConfideError):
    """A secure-computation round that cannot complete; it reveals nothing when it fails."""


class TaskError(ConfideError):
    """A task failed or did not finish in time."""
