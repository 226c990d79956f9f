"""The researcher's end of a federated query: submit, unpad each secure sum, finalise, suppress.

The plan is compiled here before anything is sent, so a query needing general MPC is
refused at once. Each node compiles the same plan from the sealed parameters and runs
only its local part; here the secure sums' totals are decoded and the operators placed
at the receiver are evaluated (:func:`confide.query._generate.finalise`). Groups with
fewer rows than the largest ``min_count`` among the contributing nodes' policies are
withheld (their cells are None), as the statistics do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from pydantic import ValidationError

from confide._errors import TaskError

if TYPE_CHECKING:
    from confide.client._client import Client, TaskResults

__all__ = ["QueryResult", "run_query"]

Row = dict[str, object]


@dataclass(frozen=True)
class QueryResult(Sequence[Row]):
    """A federated query's result rows, and who they came from.

    It is a sequence of rows (dicts, columns in the query's order), so ``result[0]["n"]``
    and ``for row in result`` work; the rest says how it was computed.
    """

    task_id: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    survivors: tuple[str, ...]
    """Nodes whose data every secure sum of the query includes."""
    sat_out: Mapping[str, str] = field(default_factory=dict)
    """Nodes that did not contribute, and why (their own words)."""
    min_count: int = 0
    suppressed: int = 0
    """Groups withheld for having fewer than ``min_count`` rows."""

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | Sequence[Row]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


def run_query(
    client: Client,
    collaboration: str,
    sql: str,
    schema: Mapping[str, Any],
    *,
    nodes: list[str] | None = None,
    sources: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    decimals: int = 3,
    timeout_s: float = 120.0,
) -> QueryResult:
    """Run a federated SQL query end to end; see :meth:`Client.run_query`."""
    from confide.algorithms.federated_query import QueryParams, compiled, encoding_of
    from confide.query import finalise, output_columns, withheld_groups

    params = QueryParams.model_validate(
        {"sql": sql, "schema": dict(schema), "decimals": decimals, "sources": dict(sources or {})}
    )
    plan, federation, layouts = compiled(params)
    targets = nodes if nodes is not None else sorted(client.nodes(collaboration))
    task_id = client.submit(collaboration, "query.sql", params.model_dump(by_alias=True), targets)
    totals = {}
    survivors: set[str] = set(targets)
    for i, layout in enumerate(layouts):
        try:
            summed = client.secure_sum(task_id, f"q{i}", wait_s=timeout_s)
        except TaskError as exc:
            raise TaskError(_why_failed(client.results(task_id, wait_s=5.0), str(exc))) from None
        totals[i] = encoding_of(layout, params, len(targets)).decode(summed.total)
        survivors &= set(summed.survivors)
    results = client.results(task_id, wait_s=timeout_s)
    min_count, sat_out = _reports(results, survivors)
    rows = finalise(plan, totals, layouts, min_count=min_count)
    return QueryResult(
        task_id=task_id,
        columns=tuple(output_columns(plan.root, federation)),
        rows=tuple(rows),
        survivors=tuple(sorted(survivors)),
        sat_out=sat_out,
        min_count=min_count,
        suppressed=withheld_groups(totals, layouts, min_count),
    )


def _reports(results: TaskResults, survivors: set[str]) -> tuple[int, dict[str, str]]:
    from confide.algorithms.federated_query import QueryContribution

    min_counts, sat_out = [], {}
    for result in results:
        if result.ok and result.output is not None:
            try:
                min_counts.append(QueryContribution.model_validate(result.output).min_count)
            except ValidationError:
                sat_out[result.node] = "its report is not a query contribution"
        else:
            sat_out[result.node] = result.error or "failed"
    for node in sorted({r.node for r in results} - survivors - set(sat_out)):
        sat_out[node] = "left a secure sum before it ended"
    return max(min_counts, default=0), sat_out


def _why_failed(results: TaskResults, error: str) -> str:
    reasons = "; ".join(f"{r.node}: {r.error}" for r in results if not r.ok and r.error)
    return f"{error}" + (f" (the nodes said: {reasons})" if reasons else "")
