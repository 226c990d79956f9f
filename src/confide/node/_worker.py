"""Algorithm steps run in worker processes, never in the node's event loop.

A pool of ``spawn``-started processes (no state inherited from the agent) holds the
node's tables and the policy's disclosure rules; each call runs one registered step and
returns either its validated output or an error message, with the declared tables the
step read (the node checks what may leave against their policy). Any exception inside a
step becomes a message naming the algorithm, so a failing or crashing algorithm never
takes the node down.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from confide._errors import ConfideError
from confide.algorithms import MAIN_STEP, get_algorithm
from confide.node._config import DataSourceConfig, TrainingDataConfig
from confide.node._datasource import LocalData
from confide.node._policy import Policy

__all__ = ["StepOutcome", "WorkerPool"]

log = logging.getLogger("confide.node.worker")
_DATA: LocalData | None = None
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class StepOutcome:
    """What a step produced: an output, or an error message for the researcher.

    ``tables`` names the declared tables the step read (through ``table``, ``source`` or
    ``run_sql``), whether it succeeded or not.
    """

    output: dict[str, object] | None
    error: str | None
    tables: tuple[str, ...] = ()


def _init_worker(
    sources: Sequence[DataSourceConfig],
    training: Sequence[TrainingDataConfig] = (),
    node_id: str = "",
    policy: Policy | None = None,
    row_secret: bytes | None = None,
) -> None:
    global _DATA
    _DATA = LocalData(sources, training, node_id=node_id, policy=policy, row_secret=row_secret)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if training:
        prepare = threading.Thread(target=_prepare_training, args=(_DATA,), name="prepare", daemon=True)
        prepare.start()


def _prepare_training(data: LocalData) -> None:
    """Import torch and Opacus and read the training data sets while the worker is idle.

    The first ``fl.train`` step would otherwise spend seconds on both. Running in the
    background, this never delays the node's start; a step that comes first waits for the
    import lock or the data set's lock, then finds the work done.
    """
    if not learning_installed():
        return
    try:
        for module in LEARNING_MODULES:
            importlib.import_module(module)
    except Exception:  # a broken install: the first training step will report it
        log.warning("could not import the learning stack (torch, opacus)", exc_info=True)
        return
    for problem in data.prepare_training():
        log.warning("%s", problem)


LEARNING_MODULES = ("confide.learning._dpsgd", "confide.learning._evaluate", "confide.learning._privacy")
"""What the first training step would import: torch, Opacus and confide's code over them."""


def learning_installed() -> bool:
    """Whether the ``fl`` extra (torch and Opacus) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "opacus"))


def _exit_with_parent(parent: int) -> None:
    # A node killed outright (SIGKILL, the OOM killer) cannot stop its pool; its workers
    # notice that they were handed to another parent and leave instead of lingering.
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _run_step(algorithm: str, params: dict[str, object], step: str = MAIN_STEP) -> StepOutcome:
    if _DATA is None:
        return StepOutcome(None, "worker was not initialised")
    _DATA.start_step()
    try:
        output = get_algorithm(algorithm).run(_DATA, params, step)
    except ConfideError as exc:
        return StepOutcome(None, str(exc), _DATA.tables_read)
    except Exception as exc:  # an algorithm's own bug: report it, keep the worker
        # The exception text may quote data: it stays in the node's log.
        log.exception("algorithm %s failed", algorithm)
        return StepOutcome(
            None,
            f"{algorithm} failed with {type(exc).__name__}; the node's log has the details",
            _DATA.tables_read,
        )
    return StepOutcome(output, None, _DATA.tables_read)


def _warm() -> bool:
    return True


class WorkerPool:
    """A process pool for algorithm steps, restarted if a worker dies.

    ``policy`` is the node's (its ``min_count`` and per-table rules reach the steps); it
    must be the policy the agent enforces, so the agent passes its own. ``row_secret``
    keys the rows of tables with an identifier in the node's release record; the agent
    passes one derived from its kit (:func:`row_key_secret`), stable across restarts.
    """

    def __init__(
        self,
        sources: Sequence[DataSourceConfig],
        workers: int = 1,
        training: Sequence[TrainingDataConfig] = (),
        *,
        node_id: str = "",
        policy: Policy | None = None,
        row_secret: bytes | None = None,
    ) -> None:
        self._node_id = node_id
        self._policy = policy or Policy()
        self._row_secret = row_secret
        self._sources = list(sources)
        self._training = list(training)
        self._workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._sources, self._training, self._node_id, self._policy, self._row_secret),
        )

    async def warm_up(self) -> None:
        """Start the worker processes now rather than on the first run."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm) for _ in range(self._workers)))

    async def run(self, algorithm: str, params: dict[str, object], step: str = MAIN_STEP) -> StepOutcome:
        """Run one step of ``algorithm`` (its main step unless ``step`` names another) in a worker."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, _run_step, algorithm, params, step)
        except BrokenProcessPool:
            log.error("a worker process died running %s; restarting the pool", algorithm)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return StepOutcome(None, f"{algorithm} crashed its worker process on this node")

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)
