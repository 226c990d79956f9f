"""The algorithm registry: what a node may run and how the researcher finalises it, found by entry point.

An :class:`Algorithm` declares both halves of its round trip. At the node: its parameters
and output as pydantic models (the node validates the researcher's parameters before
running and every output before it leaves, so an algorithm cannot send out more than it
declared), its step(s) in the worker, and either a multi-party ``protocol`` of its own or
the secure rounds it needs (:mod:`confide.algorithms._secure` runs those, the same way for
every algorithm). At the researcher: a pure ``finalise`` from the decoded totals to a
:class:`~confide.algorithms.Finalised` result. Third-party packages add algorithms under
the entry-point group ``confide.algorithms``; a node still runs only those its policy allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from confide._errors import AlgorithmError
from confide.algorithms._context import MAIN_STEP, DataContext, PeerContext
from confide.algorithms._result import Finalised
from confide.algorithms._secure import LocalFigures, SecureReport, SecureRound, SecureTotals, contribute

__all__ = ["ENTRY_POINT_GROUP", "Algorithm", "Step", "available", "get_algorithm"]

ENTRY_POINT_GROUP = "confide.algorithms"


@dataclass(frozen=True)
class Step:
    """A named extra step of an algorithm, run in the worker, and the model of what it returns."""

    run: Callable[[DataContext, Any], BaseModel]
    output: type[BaseModel]


@dataclass(frozen=True, eq=False)
class Algorithm:
    """One registered algorithm: its node half and its researcher half.

    Parameters
    ----------
    name : str
        Dotted name researchers use (``stats.summary``).
    description : str
        One line for ``confide algorithms`` and error messages.
    params : type[BaseModel]
        Model of the parameters the researcher sends (sealed).
    step : Callable
        ``step(data, params) -> local``; runs in the node's worker process.
    output : type[BaseModel]
        Model of what the node sends the researcher; anything else is refused by the node.
        Algorithms with ``rounds`` send a :class:`SecureReport`.
    local : type[BaseModel], optional
        What ``step`` returns when a protocol or the secure rounds use it (defaults to
        ``output``, or :class:`LocalFigures` with ``rounds``).
    steps : Mapping[str, Step]
        Further steps by name, for protocols that run more than one (``peers.local(params, name)``).
    protocol : Callable, optional
        A multi-party protocol of its own: ``await protocol(peers, params) -> output`` runs in
        the node's agent and talks to the task's other nodes through ``peers``.
    rounds : Callable, optional
        ``rounds(params, nodes) -> [SecureRound]``: the secure sums the algorithm needs, pure,
        the same at every node and the researcher. The node runs them through
        :func:`~confide.algorithms.contribute`.
    gather : Callable, optional
        ``await gather(peers, params) -> LocalFigures``: this node's figures for the rounds
        (default: ``step`` in the worker).
    finalise : Callable, optional
        ``finalise(params, totals: SecureTotals) -> Finalised``, pure, at the researcher.
    echo_params : bool
        Whether each node's report repeats the parameters, so a task can be finalised from
        its id alone (``confide task result``); off for large parameters (model weights).
    """

    name: str
    description: str
    params: type[BaseModel]
    step: Callable[[DataContext, Any], BaseModel]
    output: type[BaseModel] = SecureReport
    local: type[BaseModel] | None = None
    steps: Mapping[str, Step] = field(default_factory=dict)
    protocol: Callable[[PeerContext, Any], Awaitable[BaseModel]] | None = None
    rounds: Callable[[Any, Sequence[str]], Sequence[SecureRound]] | None = None
    gather: Callable[[PeerContext, Any], Awaitable[LocalFigures]] | None = None
    finalise: Callable[[Any, SecureTotals], Finalised] | None = None
    echo_params: bool = False

    @property
    def multiparty(self) -> bool:
        """Whether the node runs it with its peers (a protocol or secure rounds), not alone."""
        return self.protocol is not None or self.rounds is not None

    def parse_params(self, raw: Mapping[str, object]) -> BaseModel:
        """Validate researcher parameters; :class:`AlgorithmError` names the bad field."""
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            raise AlgorithmError(f"invalid parameters for {self.name}: {_describe(exc)}") from None

    def secure_rounds(self, params: BaseModel, nodes: Sequence[str]) -> list[SecureRound]:
        """The secure sums this algorithm runs over ``nodes`` (none for a per-node algorithm)."""
        return [] if self.rounds is None else list(self.rounds(params, sorted(nodes)))

    def run(
        self, data: DataContext, raw_params: Mapping[str, object], step: str = MAIN_STEP
    ) -> dict[str, object]:
        """Run one step and return its output, validated against the declared model."""
        if step == MAIN_STEP:
            run, declared = self.step, self.local or (LocalFigures if self.rounds else self.output)
        elif step in self.steps:
            run, declared = self.steps[step].run, self.steps[step].output
        else:
            raise AlgorithmError(f"{self.name} has no step {step!r}")
        return self._checked(run(data, self.parse_params(raw_params)), declared)

    async def run_protocol(self, peers: PeerContext, raw_params: Mapping[str, object]) -> dict[str, object]:
        """Run the multi-party part at this node and validate what it produced."""
        params = self.parse_params(raw_params)
        if self.protocol is not None:
            produced = await self.protocol(peers, params)
        elif self.rounds is not None:
            produced = await self._run_rounds(peers, params)
        else:
            raise AlgorithmError(f"{self.name} is not a multi-party algorithm")
        return self._checked(produced, self.output)

    async def _run_rounds(self, peers: PeerContext, params: BaseModel) -> SecureReport:
        rounds = self.secure_rounds(params, peers.nodes)
        gather = self.gather or _gather_in_worker
        figures, outcomes = await contribute(
            peers, rounds, lambda: gather(peers, params), timeout_s=float(getattr(params, "timeout_s", 300.0))
        )
        return SecureReport(
            algorithm=self.name,
            node=peers.node_id,
            survivors={label: list(outcome.survivors) for label, outcome in outcomes.items()},
            min_count=peers.min_count,
            params=params.model_dump(mode="json", by_alias=True) if self.echo_params else None,
            details=figures.details,
        )

    def _checked(self, produced: BaseModel, declared: type[BaseModel]) -> dict[str, object]:
        try:
            checked = declared.model_validate(produced.model_dump())
        except ValidationError as exc:
            raise AlgorithmError(
                f"{self.name} produced output that does not match its declaration "
                f"({_describe(exc)}); nothing was sent"
            ) from None
        return checked.model_dump(mode="json")


async def _gather_in_worker(peers: PeerContext, params: BaseModel) -> LocalFigures:
    return LocalFigures.model_validate(await peers.local(params.model_dump(mode="json", by_alias=True)))


@cache
def _registered() -> dict[str, Algorithm]:
    found: dict[str, Algorithm] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        algorithm = ep.load()
        if not isinstance(algorithm, Algorithm) or algorithm.name != ep.name:
            raise AlgorithmError(
                f"entry point {ep.name!r} ({ep.value}) is not an Algorithm named {ep.name!r}"
            )
        found[ep.name] = algorithm
    return found


def available() -> list[str]:
    """Names of every registered algorithm, sorted."""
    return sorted(_registered())


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; :class:`AlgorithmError` lists the known ones."""
    try:
        return _registered()[name]
    except KeyError:
        known = ", ".join(available()) or "none"
        raise AlgorithmError(f"unknown algorithm {name!r}; registered algorithms: {known}") from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"
