"""Federated learning with DP-SGD through a hub and nodes: the privacy/accuracy sweep, Fashion-MNIST, speed.

Every run goes through :func:`confide.fl._sweep.sweep`: a hub and ``--clients`` node
processes on loopback (TLS), each holding one IID part of the data set, DP-SGD with Opacus
at each node, updates combined by secure aggregation, accuracy summed securely over the
nodes' held-out parts (the MNIST 5k sample: 20 % held out, 1,000 images) or measured on the
official test set (Fashion-MNIST, 10,000 images, at the researcher).

- ``sweep``: the study's protocol (3 IID clients, 10 rounds, delta 1e-5, clip 1.0) over
  epsilon 0.1 ... 10 and no DP on the MNIST 5k sample, against the study's row (Flower +
  Opacus on MNIST 60k): 65 / 78 / 85 / 90 / 93 / 95 / 96 %.
- ``fashion``: Fashion-MNIST, 3 clients, one epsilon (3 by default).
- ``speed``: seconds per round against Flower + Opacus on the same model, data and DP
  settings (``benchmarks/fl_flower_baseline.py``, run in its own venv given by
  ``--flower-python``), ``--repeats`` runs of each, alternating.

    python benchmarks/federated_learning.py sweep --write
    python benchmarks/federated_learning.py fashion --eps 3 --write
    python benchmarks/federated_learning.py speed --flower-python /tmp/flower-venv/bin/python --write
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import DOC, machine, write_section

from confide.fl import TrainingPlan
from confide.fl._sweep import SweepRow, privacy_level, sweep, write_report

STUDY = {0.1: 0.65, 0.5: 0.78, 1.0: 0.85, 2.0: 0.90, 5.0: 0.93, 10.0: 0.95, math.inf: 0.96}
IMAGES = DOC.parent / "img"


def _plan(args: argparse.Namespace) -> TrainingPlan:
    return TrainingPlan.model_validate(
        {
            "dataset": "train",
            "model": args.model,
            "model_config": json.loads(args.model_config),
            "rounds": args.rounds,
            "delta": args.delta,
            "clip_norm": args.clip,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "momentum": args.momentum,
            "local_epochs": args.local_epochs,
            "timeout_s": 3600,
        }
    )


def _command(args: argparse.Namespace) -> str:
    return "python benchmarks/federated_learning.py " + shlex.join(sys.argv[1:])


def _progress(epsilon: float, finished: Any, plan: TrainingPlan) -> None:
    accuracy = finished.evaluation.accuracy if finished.evaluation else math.nan
    print(
        f"  eps {epsilon:g} round {finished.round + 1}/{plan.rounds}: loss {finished.train_loss:.3f}, "
        f"held-out accuracy of the incoming model {accuracy:.3f}, {finished.seconds:.1f} s",
        flush=True,
    )


def _settings(args: argparse.Namespace) -> str:
    rates = f"lr {args.lr}" + (f" (at epsilon:lr {args.lr_at})" if getattr(args, "lr_at", "") else "")
    at = f"; per epsilon {args.at}" if getattr(args, "at", "") else ""
    return (
        f"batch {args.batch_size} (Poisson), {rates}, momentum {args.momentum}, clip {args.clip:g}, "
        f"{args.local_epochs:g} local epoch(s) per round, model {args.model} {args.model_config}{at}"
    )


def _overrides(args: argparse.Namespace, grid: list[float]) -> dict[float, dict[str, Any]]:
    """Plan fields that differ per epsilon: ``--lr-at`` (``5:0.5,10:0.5``) and ``--at`` (JSON).

    Less noise allows larger steps and more of them; a tiny epsilon does better with fewer.
    ``--at '{"0.5": {"batch_size": 64, "local_epochs": 0.5}}'`` sets any TrainingPlan field.
    """
    changes: dict[float, dict[str, Any]] = {e: {} for e in grid}
    for pair in filter(None, args.lr_at.split(",")):
        eps, rate = pair.split(":")
        changes[float(eps)]["learning_rate"] = float(rate)
    for eps, fields in json.loads(args.at or "{}").items():
        changes[float(eps)].update(fields)
    return changes


def run_sweep(args: argparse.Namespace) -> None:
    grid = [float(e) for e in args.eps.split(",")]
    changes = _overrides(args, grid)
    started = time.monotonic()
    found: dict[float, SweepRow] = {}
    for key in sorted({json.dumps(c, sort_keys=True) for c in changes.values()}):
        group = [e for e in grid if json.dumps(changes[e], sort_keys=True) == key]
        plan = TrainingPlan.model_validate({**_plan(args).model_dump(by_alias=True), **json.loads(key)})
        rows = sweep(
            dataset=args.dataset, epsilons=group, plan=plan, clients=args.clients, progress=_progress
        )
        found.update(zip(group, rows, strict=True))
    rows = [found[e] for e in grid]
    title = (
        f"{args.dataset}, {args.clients} IID clients, {args.rounds} rounds, delta {args.delta:g}, "
        f"clip {args.clip:g}"
    )
    folder = Path(args.out)
    write_report(rows, folder, title=title)
    print((folder / "results.md").read_text())
    if not args.write:
        return
    IMAGES.mkdir(exist_ok=True)
    plot = IMAGES / f"fl-sweep-{args.dataset}.png"
    shutil.copy(folder / "accuracy_vs_epsilon.png", plot)
    lines = [
        f"Command: `{_command(args)}` ({machine()}; hub and {args.clients} nodes as separate processes, "
        f"TLS, secure aggregation of every update; {_settings(args)}). Whole sweep "
        f"{(time.monotonic() - started) / 60:.1f} min.",
        "",
        "Test accuracy is the final model's, summed securely over the nodes' held-out parts "
        "(20 % of the sample, 1,000 images); epsilon spent is the largest any node's accountant recorded "
        "for the job. The study row is Flower + Opacus on full MNIST (60,000 images, 12x more data per "
        "unit of privacy) with secure aggregation only simulated.",
        "",
        "| epsilon | privacy level | confide, MNIST 5k | study, MNIST 60k | epsilon spent "
        "| noise multiplier |",
        "|---:|---|---:|---:|---:|---:|",
        *[_sweep_line(r) for r in rows],
        "",
        f"![accuracy against epsilon](img/{plot.name})",
    ]
    write_section(
        f"fl_sweep_{args.dataset}",
        f"Federated DP-SGD privacy/accuracy sweep, {args.dataset} (issue 6)",
        lines,
    )


def _sweep_line(row: SweepRow) -> str:
    study = STUDY.get(row.epsilon)
    versus = "" if study is None else f"{100 * study:.0f} %"
    mark = "" if study is None else (" (better)" if row.accuracy > study else " (worse)")
    spent = "inf" if math.isinf(row.spent) else f"{row.spent:.3f}"
    sigma = "" if row.noise_multiplier is None else f"{row.noise_multiplier:.3f}"
    eps = "no DP" if math.isinf(row.epsilon) else f"{row.epsilon:g}"
    level = privacy_level(row.epsilon)
    return f"| {eps} | {level} | {100 * row.accuracy:.1f} %{mark} | {versus} | {spent} | {sigma} |"


def run_fashion(args: argparse.Namespace) -> None:
    started = time.monotonic()
    [row] = sweep(
        dataset="fashion-mnist",
        epsilons=[args.eps],
        plan=_plan(args),
        clients=args.clients,
        limit=args.limit,
        progress=_progress,
    )
    minutes = (time.monotonic() - started) / 60
    accuracy = row.researcher_accuracy if row.researcher_accuracy is not None else math.nan
    print(
        f"Fashion-MNIST eps {args.eps}: test accuracy {accuracy:.4f}, spent {row.spent:.3f}, "
        f"{minutes:.1f} min"
    )
    if not args.write:
        return
    lines = [
        f"Command: `{_command(args)}` ({machine()}; hub and {args.clients} nodes as separate processes, TLS, "
        f"secure aggregation; {_settings(args)}; {args.rounds} rounds; {minutes:.1f} min in all).",
        "",
        "| data | clients | epsilon (delta 1e-5) | epsilon spent | test accuracy (10,000 images) | target |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Fashion-MNIST train ({'60,000' if args.limit is None else f'{args.limit:,}'}; "
        "the nodes hold 10 % out) "
        f"| {args.clients} "
        f"| {args.eps:g} | {row.spent:.3f} | {100 * accuracy:.2f} % | >= 86 % |",
    ]
    write_section("fl_fashion", "Federated DP-SGD on Fashion-MNIST (issue 6)", lines)


def run_speed(args: argparse.Namespace) -> None:
    """``--repeats`` runs of each system, alternating, so that both see the machine alike."""
    confide_runs: list[list[float]] = []
    flower_runs: list[list[float]] = []
    confide_acc: list[float] = []
    flower_acc: list[float] = []
    framework = "Flower + Opacus"
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
        if args.flower_python:
            flower = _flower_run(args)
            flower_runs.append([float(x) for x in flower["round_s"]])
            flower_acc.append(float(flower["accuracy"]))
            framework = str(flower.get("framework", framework))
            print(f"flower: rounds {flower['round_s']}, accuracy {flower['accuracy']:.3f}", flush=True)
        rounds: list[float] = []

        def collect(epsilon: float, finished: Any, plan: TrainingPlan, rounds: list[float] = rounds) -> None:
            rounds.append(finished.seconds)
            _progress(epsilon, finished, plan)

        [row] = sweep(
            dataset="mnist5k", epsilons=[args.eps], plan=_plan(args), clients=args.clients, progress=collect
        )
        confide_runs.append(rounds)
        confide_acc.append(row.accuracy)
    for name, runs in {"confide": confide_runs, "flower": flower_runs}.items():
        if runs:
            print(f"{name}: {_timing(runs)}", flush=True)
    if not args.write:
        return
    lines = [
        f"Command: `{_command(args)}` ({machine()}; {args.repeats} runs of each, alternating; mnist5k, "
        f"{args.clients} IID clients, {args.rounds} rounds, {_settings(args)}, epsilon {args.eps:g} over "
        "all rounds, one torch thread per node or client).",
        "",
        "| system | transport | median s per round (after the first) | range of the runs' medians "
        "| first round, s (median) | final test accuracy (mean) |",
        "|---|---|---:|---:|---:|---:|",
        f"| confide | hub + nodes, TLS, sealed tasks, secure aggregation of the update | "
        f"{_speed_cells(confide_runs, confide_acc)} |",
    ]
    if flower_runs:
        cells = _speed_cells(flower_runs, flower_acc)
        lines.append(f"| {framework} | gRPC, no TLS, plain FedAvg | {cells} |")
    write_section("fl_speed", "Federated DP-SGD: time per round against Flower + Opacus (issue 6)", lines)


def _flower_run(args: argparse.Namespace) -> dict[str, Any]:
    common = [
        "--clients", str(args.clients), "--rounds", str(args.rounds), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--local-epochs", f"{args.local_epochs:g}", "--eps", str(args.eps),
    ]  # fmt: skip
    baseline = Path(__file__).resolve().parent / "fl_flower_baseline.py"
    done = subprocess.run(  # our own script, in the venv the user named
        [args.flower_python, str(baseline), "--dataset", "mnist5k", *common],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _steady(runs: list[list[float]]) -> list[float]:
    """Every round but each run's first (which pays for process start-up and imports)."""
    return [s for rounds in runs for s in rounds[1:]]


def _timing(runs: list[list[float]]) -> str:
    medians = [statistics.median(r[1:]) for r in runs if len(r) > 1]
    first = statistics.median(r[0] for r in runs)
    return (
        f"median {statistics.median(_steady(runs)):.3f} s per round after the first "
        f"(runs {', '.join(f'{m:.3f}' for m in medians)}), first round {first:.1f} s"
    )


def _speed_cells(runs: list[list[float]], accuracy: list[float]) -> str:
    medians = [statistics.median(r[1:]) for r in runs if len(r) > 1]
    first = statistics.median(r[0] for r in runs)
    return (
        f"{statistics.median(_steady(runs)):.2f} | {min(medians):.2f}-{max(medians):.2f} | {first:.1f} "
        f"| {100 * statistics.fmean(accuracy):.1f} %"
    )


def _first(data: dict[str, Any] | None, *keys: str) -> float:
    for key in keys:
        if data is not None and key in data:
            return float(data[key])
    return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("sweep", "fashion", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--clients", type=int, default=3)
        p.add_argument("--rounds", type=int, default=10)
        p.add_argument("--delta", type=float, default=1e-5)
        p.add_argument("--clip", type=float, default=1.0)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--lr", type=float, default=0.5)
        p.add_argument("--momentum", type=float, default=0.0)
        p.add_argument("--local-epochs", type=float, default=1.0)
        p.add_argument("--model", default="image.cnn28", help="a registered architecture")
        p.add_argument("--model-config", default="{}")
        p.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
        if name == "sweep":
            p.add_argument("--dataset", default="mnist5k")
            p.add_argument("--eps", default="0.1,0.5,1,2,5,10,inf")
            p.add_argument("--out", default="/tmp/confide-fl-sweep")
            p.add_argument("--lr-at", default="", help="per-epsilon learning rates, e.g. 5:0.5,10:0.5")
            p.add_argument(
                "--at", default="", help='per-epsilon plan fields, JSON: {"0.5": {"batch_size": 64}}'
            )
        else:
            p.add_argument("--eps", type=float, default=3.0)
        if name == "fashion":
            p.add_argument("--limit", type=int, default=None)
        if name == "speed":
            p.add_argument("--flower-python", default=None)
            p.add_argument("--repeats", type=int, default=3, help="runs of each system, alternating")
    args = parser.parse_args()
    {"sweep": run_sweep, "fashion": run_fashion, "speed": run_speed}[args.what](args)


if __name__ == "__main__":
    main()
