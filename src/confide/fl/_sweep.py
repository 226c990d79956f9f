"""The privacy/accuracy sweep: one federated training per epsilon, through a hub and nodes.

:func:`sweep` starts a local consortium (a hub and ``clients`` node processes, each
holding one IID or Dirichlet part of a public data set, exactly the code a hospital
runs), trains once per epsilon with :func:`confide.fl.train`, and :func:`write_report`
writes the table (Markdown and CSV) and the plot (PNG, accuracy against epsilon on a log
axis, the run without differential privacy as a dashed line).
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confide._errors import ConfigError
from confide.client import Client
from confide.fl._coordinator import RoundResult, TrainingPlan, TrainingResult, train
from confide.local import COLLABORATION, LocalConsortium

__all__ = ["DATASETS", "SweepRow", "privacy_level", "sweep", "write_report"]

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist5k", "fashion-mnist")
_STUDY = "confide-sweep"


@dataclass(frozen=True)
class SweepRow:
    """One epsilon of the sweep and what it gave."""

    epsilon: float
    accuracy: float
    loss: float
    spent: float
    noise_multiplier: float | None
    seconds_per_round: float
    researcher_accuracy: float | None


def privacy_level(epsilon: float) -> str:
    """A plain-words label for an epsilon (the usual reading of DP-SGD guarantees)."""
    if math.isinf(epsilon):
        return "none (no DP)"
    if epsilon <= 0.5:
        return "very strong"
    if epsilon <= 2:
        return "strong"
    if epsilon <= 5:
        return "moderate"
    return "weak"


def _training_data(dataset: str, clients: int, alpha: float | None, limit: int | None) -> Callable[..., Any]:
    if dataset == "mnist5k":
        entry: dict[str, Any] = {"format": "mnist-5k", "normalise": "mnist", "test_fraction": 0.2}
    elif dataset == "fashion-mnist":
        images, labels = (
            FASHION_MNIST / "train-images-idx3-ubyte.gz",
            FASHION_MNIST / "train-labels-idx1-ubyte.gz",
        )
        if not images.exists():
            raise ConfigError(
                f"Fashion-MNIST is not installed ({images} is missing): apt-get install dataset-fashion-mnist"
            )
        entry = {
            "format": "idx",
            "images": str(images),
            "labels": str(labels),
            "normalise": "fashion-mnist",
            "test_fraction": 0.1,
        }
    else:
        raise ConfigError(f"unknown data set {dataset!r}; the sweep knows {', '.join(DATASETS)}")
    if limit is not None:
        entry["limit"] = limit

    def write(node_id: str, index: int, folder: Path) -> list[dict[str, Any]]:
        partition = {"parts": clients, "index": index, **({"alpha": alpha} if alpha is not None else {})}
        return [{"name": "train", **entry, "partition": partition}]

    return write


def _researcher_test_set(dataset: str) -> Any:
    """Fashion-MNIST's own test set (10,000 images); the MNIST 5k sample has none besides the nodes'."""
    if dataset != "fashion-mnist":
        return None
    from confide.learning import FASHION_MNIST_MEAN_STD, load_idx, normalise

    test = load_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz", FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    return normalise(test, *FASHION_MNIST_MEAN_STD)


def sweep(
    *,
    dataset: str,
    epsilons: Sequence[float],
    plan: TrainingPlan,
    clients: int = 3,
    alpha: float | None = None,
    limit: int | None = None,
    root: Path | None = None,
    progress: Callable[[float, RoundResult, TrainingPlan], None] | None = None,
) -> list[SweepRow]:
    """Train once per epsilon on ``clients`` simulated hospitals; one row per epsilon.

    The nodes are real node processes behind a real hub (TLS, secure aggregation); their
    policy gives each run's data set a budget that the whole sweep fits in, and allows the
    run without differential privacy (the data set is public).
    """
    finite = [e for e in epsilons if math.isfinite(e)]
    budget = 2 * sum(finite) + 1
    test_set = _researcher_test_set(dataset)
    rows = []
    with tempfile.TemporaryDirectory(prefix="confide-sweep-") as scratch:
        where = root or Path(scratch)
        consortium = LocalConsortium(
            where,
            hospitals=clients,
            training=_training_data(dataset, clients, alpha, limit),
            policy={
                "privacy_budget": {"epsilon": budget, "delta": plan.delta},
                "allow_training_without_dp": True,
            },
            extra_env={"OMP_NUM_THREADS": "1"},
        )
        # Entering the consortium starts the hub and the nodes.
        with consortium, Client(consortium.researcher_kit, timeout_s=plan.timeout_s) as client:
            for epsilon in epsilons:
                run = plan.model_copy(update={"epsilon": epsilon, "dataset": "train"})
                report = None if progress is None else _tag(progress, epsilon)
                started = time.monotonic()
                result = train(client, COLLABORATION, run, test_set=test_set, progress=report)
                rows.append(_row(epsilon, result, time.monotonic() - started))
    return rows


def _tag(
    progress: Callable[[float, RoundResult, TrainingPlan], None], epsilon: float
) -> Callable[[RoundResult, TrainingPlan], None]:
    return lambda finished, plan: progress(epsilon, finished, plan)


def _row(epsilon: float, result: TrainingResult, seconds: float) -> SweepRow:
    final = result.federated
    sigmas = [s for s in result.noise_multiplier.values() if s is not None]
    per_round = [r.seconds for r in result.rounds]
    return SweepRow(
        epsilon=epsilon,
        accuracy=final.accuracy if final else math.nan,
        loss=final.loss if final else math.nan,
        spent=max(result.epsilon.values(), default=math.inf),
        noise_multiplier=max(sigmas) if sigmas else None,
        seconds_per_round=sorted(per_round)[len(per_round) // 2] if per_round else math.nan,
        researcher_accuracy=result.researcher.accuracy if result.researcher else None,
    )


def write_report(rows: Sequence[SweepRow], folder: Path, *, title: str) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and ``accuracy_vs_epsilon.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown, table, plot = folder / "results.md", folder / "results.csv", folder / "accuracy_vs_epsilon.png"
    header = ["epsilon", "privacy level", "test accuracy", "epsilon spent", "noise multiplier", "s per round"]
    with_researcher = any(r.researcher_accuracy is not None for r in rows)
    if with_researcher:
        header.insert(3, "researcher test accuracy")
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    with open(table, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([h.replace(" ", "_") for h in header])
        for r in rows:
            cells = [
                _num(r.epsilon),
                privacy_level(r.epsilon),
                f"{r.accuracy:.4f}",
                _num(r.spent),
                "" if r.noise_multiplier is None else f"{r.noise_multiplier:.3f}",
                f"{r.seconds_per_round:.2f}",
            ]
            if with_researcher:
                cells.insert(3, "" if r.researcher_accuracy is None else f"{r.researcher_accuracy:.4f}")
            writer.writerow(cells)
            shown = [*cells]
            shown[2] = f"{100 * r.accuracy:.1f} %"
            if with_researcher and r.researcher_accuracy is not None:
                shown[3] = f"{100 * r.researcher_accuracy:.1f} %"
            lines.append("| " + " | ".join(shown) + " |")
    markdown.write_text("\n".join(lines) + "\n")
    _plot(rows, plot, title)
    return [markdown, table, plot]


def _plot(rows: Sequence[SweepRow], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r for r in rows if math.isfinite(r.epsilon)]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(
        [r.epsilon for r in finite], [100 * r.accuracy for r in finite], "o-", label="DP-SGD, federated"
    )
    for r in rows:
        if not math.isfinite(r.epsilon):
            axes.axhline(100 * r.accuracy, linestyle="--", color="grey", label="no DP")
    axes.set_xscale("log")
    axes.set_xlabel("epsilon (whole training, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"
