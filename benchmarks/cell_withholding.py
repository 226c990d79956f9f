"""What the secure-sum driver's per-cell min_count costs a node per round, against a round without cells.

A round of ``--values`` elements (integer counts, 64-bit fixed point) is decoded from the
worker's base64 and encoded for the secure sum, once as a round of one cell and once with
every element its own cell (the worst case: a histogram of that many bins, each withheld
where it holds fewer than min_count rows, and a flag per cell appended). Best of ``--runs``.

    python benchmarks/cell_withholding.py --values 1000000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from confide.algorithms import LocalFigures, SecureRound, withhold_small_cells
from confide.crypto import FixedPoint


def best(work: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` timings of ``work``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    n = args.values
    counts = np.random.default_rng(0).integers(0, 20, n).astype(np.float64)
    encoding = FixedPoint(1, 1e7, 3, 64)
    plain = LocalFigures.of({"stat": counts}, {"stat": 10**7})
    celled = LocalFigures.of({"stat": counts}, {"stat": 10**7}, counts={"stat": counts})
    one_cell = SecureRound("stat", n, encoding)
    every_element = SecureRound("stat", n, encoding, cells=n)
    base = best(lambda: encoding.encode(withhold_small_cells(plain, one_cell, 5)), args.runs)
    cells = best(lambda: encoding.encode(withhold_small_cells(celled, every_element, 5)), args.runs)
    print(
        f"{n:,} values: one cell {base * 1000:.1f} ms, every element a cell {cells * 1000:.1f} ms "
        f"(+{(cells - base) * 1000:.1f} ms; the secure sum then carries "
        f"{every_element.summed_length:,} elements)"
    )


if __name__ == "__main__":
    main()
