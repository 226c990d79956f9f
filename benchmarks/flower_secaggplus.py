"""Baseline: wall time of one Flower SecAgg+ secure-aggregation round, in Flower's own simulation.

Runs a Flower simulation (Ray backend, no network) of ``--clients`` virtual clients, each holding
one float32 array of ``--size`` values. The server runs ``DefaultWorkflow`` with
``SecAggPlusWorkflow`` as its fit workflow: full participation, no dropouts, no training and no
evaluation, and the global model is not broadcast to the clients (they do not need it), so a
round is the four SecAgg+ stages (setup, share keys, collect masked vectors, unmask) plus the
strategy's trivial ``aggregate_fit``. Each round is timed around the fit workflow in the server
app, so simulation start-up (Ray, actors) is excluded; ``--warmup`` rounds run first and are not
timed. The unmasked mean is checked against the clients' true mean, within Flower's quantisation
step. Flower's in-memory simulation polls for messages every 0.1 s (the server's grid and the
runtime that hands messages to client actors), so each of the four stages takes at least ~0.1 s
and a round at least ~0.4 s however small the vector; ``--size 1`` measures that floor. Clients
run in Ray actors of ``--client-cpus`` CPUs each (Flower's default is 2, i.e. one actor here).

This needs Flower, which confide does not depend on; install it in a venv of its own::

    python3 -m venv /work/flower-venv
    /work/flower-venv/bin/pip install 'flwr[simulation]' numpy
    /work/flower-venv/bin/python benchmarks/flower_secaggplus.py --clients 10 --size 1000000 \
        --rounds 3 --json out.json
"""

# How Flower expands masks (checked in flwr 1.41.0): both the self mask and every pairwise mask
# come from ``pseudo_rand_gen`` in ``flwr/common/secure_aggregation/secaggplus_utils.py``. It
# XOR-folds the seed's 4-byte little-endian words into one 32-bit integer, seeds numpy's legacy
# ``np.random.RandomState`` (Mersenne Twister MT19937) with it, and draws
# ``randint(0, modulus_range - 1, shape, dtype=int64)`` (so values in [0, 2**32 - 2] by default).
# So the claim holds: MT19937 from a 32-bit seed. The self-mask seed is ``os.urandom(32)``
# (at most 2**32 distinct masks). The pairwise seed is ``generate_shared_key`` in
# ``flwr/common/secure_aggregation/crypto/symmetric_encryption.py``: ECDH on SECP384R1, HKDF-SHA256
# to 32 bytes, then urlsafe base64 (44 ASCII bytes); as every ASCII byte has its top bit clear,
# the folded seed has bits 7, 15, 23 and 31 always 0, so at most 2**28 distinct pairwise masks.
# Clients expand masks in ``_collect_masked_vectors``
# (``flwr/client/mod/secure_aggregation/secaggplus_mod.py``), the server in ``unmask_stage``
# (``flwr/server/workflow/secure_aggregation/secaggplus_workflow.py``).

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import flwr
import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.simulation import run_simulation


def client_array(cid: int, clients: int, size: int) -> np.ndarray:
    """Client ``cid``'s fixed contribution: a shared ramp in [-1, 1] plus ``(cid + 1) / clients``.

    It stays well inside Flower's default clipping range of +-8, and costs ~7 ms at 4M values.
    """
    return np.linspace(-1.0, 1.0, size, dtype=np.float32) + np.float32((cid + 1) / clients)


def expected_mean(clients: int, size: int) -> np.ndarray:
    total = np.zeros(size, dtype=np.float64)
    for cid in range(clients):
        total += client_array(cid, clients, size)
    return total / clients


class FixedClient(NumPyClient):
    def __init__(self, cid: int, clients: int, size: int) -> None:
        self.cid, self.clients, self.size = cid, clients, size

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        # Weight 1 each, so Flower's weighted average is the plain mean.
        return [client_array(self.cid, self.clients, self.size)], 1, {}


class SecAggStrategy(FedAvg):
    """FedAvg with full participation that keeps each round's unmasked aggregate."""

    def __init__(self, clients: int) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=clients,
            min_evaluate_clients=0,
            min_available_clients=clients,
            initial_parameters=ndarrays_to_parameters([]),
        )
        self.aggregates: list[Any] = []

    def configure_fit(self, server_round, parameters, client_manager):
        # The clients train nothing, so send them no model: only the secure aggregation is timed.
        return super().configure_fit(server_round, ndarrays_to_parameters([]), client_manager)

    def aggregate_fit(self, server_round, results, failures):
        if failures:
            raise RuntimeError(f"round {server_round}: {len(failures)} failures: {failures[:1]}")
        # SecAggPlusWorkflow has put the unmasked weighted mean into every FitRes already.
        parameters = results[0][1].parameters
        self.aggregates.append(parameters)
        return parameters, {}


class TimedSecAggPlus(SecAggPlusWorkflow):
    """SecAggPlusWorkflow that records the wall time of each round and of each of its stages."""

    def __init__(self, warmup: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warmup = warmup
        self.calls = 0
        self.seconds: list[float] = []
        self.stage_seconds: list[dict[str, float]] = []
        self._stages: dict[str, float] = {}

    def __call__(self, grid, context) -> None:
        self._stages = {}
        start = time.perf_counter()
        super().__call__(grid, context)
        elapsed = time.perf_counter() - start
        self.calls += 1
        if self.calls > self.warmup:
            self.seconds.append(elapsed)
            self.stage_seconds.append(self._stages)

    def _timed(self, name: str, stage, grid, context, state) -> bool:
        start = time.perf_counter()
        ok = stage(grid, context, state)
        self._stages[name] = time.perf_counter() - start
        return ok

    def setup_stage(self, grid, context, state) -> bool:
        return self._timed("setup", super().setup_stage, grid, context, state)

    def share_keys_stage(self, grid, context, state) -> bool:
        return self._timed("share_keys", super().share_keys_stage, grid, context, state)

    def collect_masked_vectors_stage(self, grid, context, state) -> bool:
        return self._timed(
            "collect_masked_vectors", super().collect_masked_vectors_stage, grid, context, state
        )

    def unmask_stage(self, grid, context, state) -> bool:
        return self._timed("unmask", super().unmask_stage, grid, context, state)


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, size = args.clients, args.size
    num_shares = args.num_shares or n
    threshold = args.threshold or max(2, round(2 * n / 3))
    strategy = SecAggStrategy(n)
    workflow = TimedSecAggPlus(
        warmup=args.warmup,
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        max_weight=args.max_weight,
    )

    def client_fn(context: Context) -> Any:
        return FixedClient(int(context.node_config["partition-id"]), n, size).to_client()

    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    server_app = ServerApp()

    @server_app.main()
    def _main(grid, context: Context) -> None:
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=args.warmup + args.rounds), strategy=strategy
        )
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

    started = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n,
        backend_config={"client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0}},
    )
    total = time.perf_counter() - started

    # Flower quantises each client's weighted value with step 2 * clip / Q after scaling it by
    # round(w / max_weight * Q) / Q; the mean's error is below one such step in original units.
    q = 4194304  # Flower's default quantization_range
    scale = round(1 / args.max_weight * q) / q
    tolerance = 2 * 8.0 / q / scale * 1.01
    expected = expected_mean(n, size)
    errors = []
    for parameters in strategy.aggregates:
        (got,) = parameters_to_ndarrays(parameters)
        errors.append(float(np.max(np.abs(got - expected))))
    rounds_done = len(workflow.seconds)
    correct = rounds_done == args.rounds and len(errors) == args.warmup + args.rounds
    correct = correct and all(e <= tolerance for e in errors)
    return {
        "flwr_version": flwr.__version__,
        "clients": n,
        "size": size,
        "rounds": rounds_done,
        "warmup_rounds": args.warmup,
        "seconds_per_round": [round(s, 4) for s in workflow.seconds],
        "median_s": round(statistics.median(workflow.seconds), 4) if workflow.seconds else None,
        "stage_seconds": [{k: round(v, 4) for k, v in stages.items()} for stages in workflow.stage_seconds],
        "correct": correct,
        "max_abs_error": max(errors) if errors else None,
        "tolerance": tolerance,
        "num_shares": num_shares,
        "reconstruction_threshold": threshold,
        "max_weight": args.max_weight,
        "client_cpus": args.client_cpus,
        "simulation_total_s": round(total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--size", type=int, default=1_000_000, help="float32 values per client")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds run first")
    parser.add_argument("--num-shares", type=int, default=0, help="default: --clients (full graph)")
    parser.add_argument("--threshold", type=int, default=0, help="default: round(2 * clients / 3)")
    parser.add_argument("--max-weight", type=float, default=1.0, help="SecAgg+ max_weight (weights are 1)")
    parser.add_argument("--client-cpus", type=float, default=1.0, help="Ray CPUs per client actor")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--verbose", action="store_true", help="keep Flower's INFO logging")
    args = parser.parse_args()
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)

    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
