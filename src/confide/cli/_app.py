"""The ``confide`` command: provision, hub, node, task, algorithms, demo.

Errors of the confide tree are printed as one line naming what is wrong and what to do,
with exit status 1; a traceback is only ever shown for a bug (and then with ``--debug``
advice). ``--json`` gives machine-readable output where a script would want it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from confide._errors import ConfideError, ConfigError
from confide._version import __version__
from confide.cli._fl import fl_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="confide: federated statistics across hospitals with a blind hub.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
hub_app = typer.Typer(help="Run the hub.", no_args_is_help=True)
node_app = typer.Typer(help="Run a hospital's node.", no_args_is_help=True)
task_app = typer.Typer(help="Submit tasks and fetch results (researchers).", no_args_is_help=True)
app.add_typer(hub_app, name="hub")
app.add_typer(node_app, name="node")
app.add_typer(task_app, name="task")
app.add_typer(fl_app, name="fl")

out = Console()
err = Console(stderr=True)

KitOption = Annotated[
    Path, typer.Option("--kit", "-k", help="Your researcher kit directory.", envvar="CONFIDE_KIT")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"confide {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


@app.command()
def provision(
    consortium: Annotated[Path, typer.Argument(help="The consortium description (YAML).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the CA, kits and hub seed.")
    ] = Path("kits"),
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output directory.")] = False,
) -> None:
    """Create the consortium CA, one kit per node and researcher, and the hub's seed."""
    from confide.kit import provision as do_provision

    root = do_provision(consortium, out_dir, force=force)
    out.print(f"[green]provisioned[/] {root}")
    out.print(f"  hub:         confide hub start --config {root / 'hub' / 'hub.yaml'}")
    out.print(f"  node kits:   {root / 'nodes'}/<id>   (copy each to its hospital)")
    out.print(f"  researchers: {root / 'researchers'}/<id>")
    out.print(f"  [yellow]keep {root / 'ca'} offline: it can certify new parties[/]")


@hub_app.command("start")
def hub_start(
    config: Annotated[Path, typer.Option("--config", "-c", help="hub.yaml written by provision.")],
    host: Annotated[str | None, typer.Option(help="Override the listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Override the port.")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve plain HTTP (local development only).")
    ] = False,
) -> None:
    """Serve the hub: REST API for researchers; WebSocket, gRPC and long-polling for nodes."""
    import uvicorn

    from confide.hub import create_app, load_hub_settings, preflight

    settings = load_hub_settings(config)
    overrides = {"host": host, "port": port, "insecure": True if insecure else None}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if not settings.tls and not settings.insecure:
        raise ConfigError(
            f"{config} names no tls_cert and tls_key, so the hub would serve plain HTTP; "
            "use the files 'confide provision' wrote, or pass --insecure for local development"
        )
    # Open, migrate and seed the store here, so a bad URL or seed is one clear error line.
    asyncio.run(preflight(settings))
    tls = (
        {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)} if settings.tls else {}
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets-sansio",
        loop="auto",  # uvloop where installed (its TLS is much faster than asyncio's)
        http="auto",  # httptools where installed
        timeout_graceful_shutdown=5,  # held long-polls must not delay a shutdown
        ws_max_size=64 * 1024 * 1024,
        **tls,  # type: ignore[arg-type]
    )


@node_app.command("start")
def node_start(
    config: Annotated[Path, typer.Option("--config", "-c", help="node.yaml of this hospital.")],
) -> None:
    """Connect this hospital's node to the hub and serve runs until stopped."""
    from confide.kit import Kit
    from confide.node import Agent, hub_connector, load_node_config

    cfg = load_node_config(config)
    kit = Kit.load(cfg.kit)
    agent = Agent(cfg, kit, hub_connector(cfg, kit))

    async def serve() -> None:
        # SIGTERM (service managers, `kill`) must shut the worker processes down too.
        main = asyncio.current_task()
        if main is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        try:
            await agent.run()
        finally:
            await agent.close()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        _run_loop(serve())


@task_app.command("submit")
def task_submit(
    collaboration: Annotated[str, typer.Option("--collaboration", "-C", help="Collaboration id.")],
    algorithm: Annotated[
        str, typer.Option("--algorithm", "-a", help="Registered algorithm, e.g. stats.summary.")
    ],
    kit: KitOption,
    params: Annotated[str, typer.Option("--params", "-p", help="JSON object, or @file.json.")] = "{}",
    node: Annotated[list[str] | None, typer.Option("--node", help="Only these nodes (repeatable).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait and print the results.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Seal a task to each node of a collaboration and submit it."""
    from confide.cli._render import print_json
    from confide.client import Client

    with Client(kit) as client:
        task_id = client.submit(collaboration, algorithm, _parse_params(params), node or None)
        if not wait:
            print_json(out, {"task": task_id}) if as_json else out.print(task_id)
            return
        client.wait(task_id, timeout, progress=not as_json)
        results = client.results(task_id)
        statistic = _finalised(client, task_id)
    _show(results, statistic, as_json)
    if results.failed and statistic is None:
        raise typer.Exit(1)


@task_app.command("status")
def task_status(task_id: str, kit: KitOption, as_json: JsonOption = False) -> None:
    """Show a task's runs and whether their nodes are online."""
    from confide.client import Client

    with Client(kit) as client:
        state = client.status(task_id)
    if as_json:
        out.print_json(
            json.dumps({"id": state.id, "status": state.status, "runs": state.runs, "online": state.online})
        )
        return
    out.print(f"task {state.id}: [bold]{state.status}[/]")
    for node_id, status in state.runs.items():
        out.print(f"  {node_id:20} {status:10} {'online' if state.online[node_id] else 'offline'}")


@task_app.command("result")
def task_result(
    task_id: str,
    kit: KitOption,
    as_json: JsonOption = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for unfinished runs first.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
) -> None:
    """Open and print a task's results."""
    from confide.client import Client

    with Client(kit) as client:
        if wait:
            client.wait(task_id, timeout, progress=not as_json)
        results = client.results(task_id)
        statistic = _finalised(client, task_id)
    _show(results, statistic, as_json)


@app.command()
def algorithms(as_json: JsonOption = False) -> None:
    """List the registered algorithms."""
    from confide.algorithms import available, get_algorithm

    names = available()
    if as_json:
        out.print_json(json.dumps({n: get_algorithm(n).description for n in names}))
        return
    for name in names:
        out.print(f"{name:24} {get_algorithm(name).description}")


@app.command()
def query(
    schema: Annotated[Path, typer.Option("--schema", "-s", help="The federation schema (YAML or JSON).")],
    sql: Annotated[str, typer.Argument(help="One SELECT statement, or @file.sql.")],
    run: Annotated[
        bool, typer.Option("--run", help="Run it on the collaboration's nodes (needs --kit, -C).")
    ] = False,
    explain: Annotated[
        bool | None, typer.Option("--explain/--no-explain", help="Print where each operator runs.")
    ] = None,
    collaboration: Annotated[
        str | None, typer.Option("--collaboration", "-C", help="Collaboration id (with --run).")
    ] = None,
    kit: Annotated[
        Path | None,
        typer.Option("--kit", "-k", help="Your researcher kit (with --run).", envvar="CONFIDE_KIT"),
    ] = None,
    node: Annotated[list[str] | None, typer.Option("--node", help="Only these nodes (repeatable).")] = None,
    decimals: Annotated[int, typer.Option(help="Fixed-point decimals of the secure sums.")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
    to: Annotated[str, typer.Option(help="Who receives the result.")] = "researcher",
    as_json: JsonOption = False,
) -> None:
    """Compile a federated SQL query and print its plan; with --run, run it and print the result.

    Each operator is placed local at a party (in the clear, inside the hospital), in a
    secure sum, or at the receiver. A query that would need general MPC (a join across
    parties, an exact median, row-level output) is refused with the operator, the reason
    and what is supported, before anything is sent.
    """
    from confide.query import load_schema, parse_sql
    from confide.query.passes import compile_plan

    if run and to != "researcher":
        raise ConfigError(
            f"--to {to} with --run: a run's result goes to you, the researcher who submits it; --to only "
            "changes the plan printed without --run"
        )
    text = _read_query(sql)
    federation = load_schema(schema)
    plan = compile_plan(parse_sql(text, federation, to=to), federation)
    if explain if explain is not None else not run:
        # With --json the plan goes to stderr, so that stdout stays one JSON document.
        (err if as_json and run else out).print(plan.explain(), markup=False, highlight=False, soft_wrap=True)
    if not run:
        return
    if collaboration is None or kit is None:
        raise ConfigError("confide query --run needs --collaboration (-C) and --kit (or CONFIDE_KIT)")
    from confide.client import Client

    with Client(kit) as client:
        result = client.run_query(
            collaboration,
            text,
            federation.model_dump(mode="json"),
            nodes=node or None,
            decimals=decimals,
            timeout_s=timeout,
        )
    _show_query(result, as_json)


@app.command()
def submit(
    job: Annotated[Path, typer.Argument(help="A C2D-style job spec (JSON).")],
    kit: KitOption,
    collaboration: Annotated[
        str | None,
        typer.Option("--collaboration", "-C", help="Collaboration id (default: the job's config)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Run a C2D-style job: a base64 SQL query, its parties and their files or tables.

    See docs/query.md for the format. Parties map to nodes (config.parties), endpoints
    to the nodes' declared data sources; a malformed spec is refused naming the field.
    """
    from confide.client import Client, load_job
    from confide.query import FederationSchema, parse_sql
    from confide.query.passes import compile_plan

    spec = load_job(job)
    where = collaboration or spec.collaboration
    if where is None:
        raise ConfigError(f"{job}: give config.collaboration in the job or --collaboration")
    federation = FederationSchema.model_validate(spec.schema)
    compile_plan(parse_sql(spec.sql, federation), federation)  # refuse before anything is sent
    with Client(kit) as client:
        result = client.run_query(
            where,
            spec.sql,
            spec.schema,
            nodes=list(spec.nodes),
            sources={n: {t: ref.as_params() for t, ref in refs.items()} for n, refs in spec.sources.items()},
            decimals=spec.decimals,
            timeout_s=timeout,
        )
    if not as_json:
        out.print(f"job {spec.id}: task {result.task_id} on {', '.join(spec.nodes)}")
    _show_query(result, as_json)


def _read_query(sql: str) -> str:
    if not sql.startswith("@"):
        return sql
    try:
        return Path(sql[1:]).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read query file {sql[1:]}: {exc.strerror}") from None


def _show_query(result: Any, as_json: bool) -> None:
    from confide.cli._render import print_finalised, print_json

    if as_json:
        print_json(out, result.to_json())
    else:
        print_finalised(out, result)


@app.command()
def demo(
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo's kits, data and logs in this directory.")
    ] = None,
    port: Annotated[int, typer.Option(help="Hub port (0: pick a free one).")] = 0,
) -> None:
    """Provision 3 hospitals, start a hub and 3 nodes on loopback, run a task, shut down."""
    from confide.cli._demo import run_demo

    run_demo(out, keep=keep, port=port)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (faster TLS), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _parse_params(text: str) -> dict[str, Any]:
    source = "--params"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read parameters file {source}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source} must be a JSON object of algorithm parameters")
    return value


def _finalised(client: Any, task_id: str) -> Any:
    """The task's result finalised by its algorithm, or None for per-node algorithms (stats.summary)."""
    from confide._errors import AlgorithmError
    from confide.algorithms import get_algorithm

    state = client.status(task_id)
    try:
        algorithm = get_algorithm(state.algorithm)
    except AlgorithmError:
        return None  # not installed here: its per-node results are shown as they are
    if algorithm.finalise is None or not algorithm.echo_params:
        return None  # per-node results, or finalised only by the program that ran it (fl.train)
    if not any(r.ok for r in client.results(task_id)):
        return None  # nobody contributed: the per-node errors say why
    return client.finalise(task_id, wait_s=30)


def _show(results: Any, finalised: Any, as_json: bool) -> None:
    from confide.algorithms.secure_stats import StatisticResult
    from confide.cli._render import print_finalised, print_json, print_results

    if as_json:
        data = _results_json(results)
        if finalised is not None:
            data["result"] = finalised.to_json()
            if isinstance(finalised, StatisticResult):
                data["statistic"] = data["result"]  # the name before 0.2; kept for scripts
        print_json(out, data)
    elif finalised is not None:
        print_finalised(out, finalised)
    else:
        print_results(out, results)


def _results_json(results: Any) -> dict[str, Any]:
    return {
        "task": results.task_id,
        "results": [{"node": r.node, "ok": r.ok, "output": r.output, "error": r.error} for r in results],
    }


def main() -> None:
    """Entry point: run the CLI, turning confide errors into one clear line."""
    # gRPC's C core logs every failed handshake to stderr unless told otherwise.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        code = app(standalone_mode=False)
    except (click.ClickException, TyperException) as exc:
        # typer vendors click: its usage errors are not click's own exception classes.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except ConfideError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
