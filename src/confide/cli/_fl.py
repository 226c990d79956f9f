"""``confide fl``: federated training (``run``) and the privacy/accuracy sweep (``sweep``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from confide._errors import ConfigError

__all__ = ["fl_app"]

fl_app = typer.Typer(help="Federated learning with DP-SGD (needs the fl extra).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _plan(**settings: Any) -> Any:
    from pydantic import ValidationError

    from confide.fl import TrainingPlan

    try:
        return TrainingPlan.model_validate({k: v for k, v in settings.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid training settings: {problems}") from None


def _model_config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--model-config is not JSON ({exc.msg}); e.g. '{{\"channels\": [16, 32]}}'"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError("--model-config must be a JSON object, e.g. '{\"hidden\": 32}'")
    return value


def _epsilon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"epsilon {text!r} is not a number (or inf)") from None
    if not value > 0:
        raise ConfigError(f"epsilon must be positive, not {text}")
    return value


def _bar(total: int) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _status(finished: Any) -> str:
    parts = [f"loss {finished.train_loss:.3f}"]
    if finished.evaluation is not None:
        parts.append(f"held-out acc {100 * finished.evaluation.accuracy:.1f} %")
    if finished.epsilon:
        parts.append(f"eps {max(finished.epsilon.values()):.2f}")
    return "  ".join(parts)


Dataset = Annotated[str, typer.Option("--dataset", "-d", help="The nodes' training_data name.")]
Model = Annotated[
    str, typer.Option(help="A model of the registry: image.cnn28, image.scatter28, tabular.mlp, ...")
]
ModelConfig = Annotated[str | None, typer.Option(help="Model settings as JSON, e.g. '{\"hidden\": 32}'.")]
Rounds = Annotated[int, typer.Option(help="FedAvg rounds.")]
Delta = Annotated[float, typer.Option(help="DP delta.")]
Clip = Annotated[float, typer.Option(help="Per-sample gradient norm bound.")]
Batch = Annotated[int, typer.Option("--batch-size", help="Expected batch size (Poisson sampling).")]
Rate = Annotated[float, typer.Option("--lr", help="Local learning rate.")]
Momentum = Annotated[float, typer.Option(help="Local SGD momentum.")]
Epochs = Annotated[float, typer.Option("--local-epochs", help="Local epochs per round.")]
Steps = Annotated[
    int | None, typer.Option("--local-steps", help="Local steps per round (instead of epochs).")
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for one round.")]


@fl_app.command("run")
def run(
    kit: Annotated[Path, typer.Option("--kit", "-k", help="Your researcher kit.", envvar="CONFIDE_KIT")],
    collaboration: Annotated[str, typer.Option("--collaboration", "-C", help="Collaboration id.")],
    dataset: Dataset,
    epsilon: Annotated[
        str, typer.Option("--eps", help="Target epsilon over all rounds; inf: no DP.")
    ] = "inf",
    model: Model = "image.cnn28",
    model_config: ModelConfig = None,
    rounds: Rounds = 10,
    delta: Delta = 1e-5,
    clip: Clip = 1.0,
    batch_size: Batch = 256,
    learning_rate: Rate = 0.5,
    momentum: Momentum = 0.0,
    local_epochs: Epochs = 1.0,
    local_steps: Steps = None,
    node: Annotated[list[str] | None, typer.Option("--node", help="Train on these nodes only.")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Folder for a checkpoint after each round; a run there resumes.")
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the final model (safetensors).")
    ] = None,
    timeout: Timeout = 900.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
) -> None:
    """Train a model over the nodes with FedAvg: DP-SGD at each node, updates summed securely."""
    from confide.client import Client
    from confide.fl import train

    plan = _plan(
        dataset=dataset,
        model=model,
        model_config=_model_config(model_config),
        rounds=rounds,
        epsilon=_epsilon(epsilon),
        delta=delta,
        clip_norm=clip,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        local_epochs=local_epochs,
        local_steps=local_steps,
        timeout_s=timeout,
    )
    with Client(kit) as client, _bar(plan.rounds) as bar:
        task = bar.add_task("training", total=plan.rounds, status="")

        def show(finished: Any, _: Any) -> None:
            bar.update(task, completed=finished.round + 1, status=_status(finished))

        result = train(client, collaboration, plan, nodes=node, checkpoint=checkpoint, progress=show)
        bar.update(task, completed=len(result.rounds))
    if save is not None:
        save.write_bytes(result.weights)
    _show_training(result, plan, save, as_json)


def _show_training(result: Any, plan: Any, save: Path | None, as_json: bool) -> None:
    """A finished training job: accuracy, epsilon spent per node, where the model went."""
    if as_json:
        summary = {
            "job_id": result.job_id,
            "rounds": len(result.rounds),
            "test_accuracy": None if result.federated is None else result.federated.accuracy,
            "test_loss": None if result.federated is None else result.federated.loss,
            "test_samples": None if result.federated is None else result.federated.samples,
            "epsilon_spent": {k: (None if math.isinf(v) else v) for k, v in result.epsilon.items()},
            "noise_multiplier": result.noise_multiplier,
            "model": str(save) if save else None,
        }
        out.print_json(json.dumps(summary))
        return
    out.print(
        f"job {result.job_id}: {len(result.rounds)} rounds on {', '.join(result.rounds[-1].participants)}"
    )
    if result.federated is not None:
        out.print(
            f"  test accuracy {100 * result.federated.accuracy:.2f} %  loss {result.federated.loss:.4f}  "
            f"({result.federated.samples} held-out samples, summed securely)"
        )
    for name, spent in sorted(result.epsilon.items()):
        out.print(f"  {name}: epsilon spent {spent:.3f} (delta {plan.delta:g})")
    if save is not None:
        out.print(f"  model written to {save}")


@fl_app.command("sweep")
def sweep_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="mnist5k or fashion-mnist.")] = "mnist5k",
    clients: Annotated[int, typer.Option(help="Simulated hospitals (node processes).")] = 3,
    rounds: Rounds = 10,
    delta: Delta = 1e-5,
    clip: Clip = 1.0,
    epsilons: Annotated[
        str, typer.Option("--eps", help="Comma-separated epsilons; inf for no DP.")
    ] = "0.1,0.5,1,2,5,10,inf",
    model: Model = "image.cnn28",
    model_config: ModelConfig = None,
    batch_size: Batch = 64,
    learning_rate: Rate = 0.5,
    momentum: Momentum = 0.0,
    local_epochs: Epochs = 1.0,
    local_steps: Steps = None,
    alpha: Annotated[
        float | None, typer.Option(help="Dirichlet alpha for non-IID parts; default IID.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only this many samples (random).")] = None,
    folder: Annotated[Path, typer.Option("--out", "-o", help="Where to write the table and plot.")] = Path(
        "sweep"
    ),
    timeout: Timeout = 900.0,
) -> None:
    """Train once per epsilon through a local hub and nodes; write a table (MD, CSV) and a plot (PNG)."""
    from confide.fl import write_report

    grid = [_epsilon(e.strip()) for e in epsilons.split(",") if e.strip()]
    if not grid:
        raise ConfigError("--eps needs at least one epsilon, e.g. 1,inf")
    plan = _plan(
        dataset="train",
        model=model,
        model_config=_model_config(model_config),
        rounds=rounds,
        delta=delta,
        clip_norm=clip,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        local_epochs=local_epochs,
        local_steps=local_steps,
        timeout_s=timeout,
    )
    rows = _sweep_with_progress(grid, plan, dataset=dataset, clients=clients, alpha=alpha, limit=limit)
    title = f"{dataset}, {clients} clients, {rounds} rounds, delta {delta:g}, clip {clip:g}"
    for path in write_report(rows, folder, title=title):
        out.print(f"wrote {path}")
    out.print((folder / "results.md").read_text())


def _sweep_with_progress(
    grid: list[float], plan: Any, *, dataset: str, clients: int, alpha: float | None, limit: int | None
) -> Any:
    """Run the sweep with a progress bar over every round of every epsilon."""
    from confide.fl import sweep

    total = len(grid) * plan.rounds
    with _bar(total) as bar:
        task = bar.add_task("sweep", total=total, status="starting the hub and nodes")
        done: list[int] = []

        def show(epsilon: float, finished: Any, _: Any) -> None:
            done.append(1)
            status = f"eps {epsilon:g} round {finished.round + 1}  " + _status(finished)
            bar.update(task, completed=len(done), status=status)

        return sweep(
            dataset=dataset,
            epsilons=grid,
            plan=plan,
            clients=clients,
            alpha=alpha,
            limit=limit,
            progress=show,
        )
