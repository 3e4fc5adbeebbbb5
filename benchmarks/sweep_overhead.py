#!/usr/bin/env python
"""Benchmark: what a sweep costs beyond its cells' own compute, and the Collapse-or-Thrive grids as sweeps.

    python benchmarks/sweep_overhead.py                 # overhead (serial, local, ray) + both grids, ~5 min
    python benchmarks/sweep_overhead.py --quick         # overhead only, small, ~1 min
    python benchmarks/sweep_overhead.py --gaussian-d 1,3,10,31,100   # the full Gaussian grid (≈5 GiB per d=100 worker)

1. Overhead per cell. A sweep of N tiny regression cells (d=3, T=20, 5 generations, 10
   replicates: milliseconds of compute each) runs through ``synthloop.sweep.run_sweep`` with the
   serial, local (process pool) and Ray executors, at two sizes N₁ < N₂. The wall time is fitted
   as ``a + b·N``: ``a`` is the fixed start-up (pool spawn, Ray start), ``b·workers`` the
   worker-seconds each cell costs. That is compared, in the same run, with the cell's own compute
   (``synthloop.run`` of the same experiment in this process, nothing written) and with the time
   the worker records for the cell (``wall_s`` in the index: the run plus its run directory —
   Parquet files, summary, checkpoints, figure.png/.svg).
2. The Collapse-or-Thrive grids through the CLI, ``synthloop sweep … --quiet``: regression
   d ∈ {1,3,10,32,100} × T ∈ {10,32,100,316,1000} × σ² ∈ {0.1,1,10} and Gaussian d × T with
   100 generations × 100 replicates, 3 workflows, ``--workers`` processes. Reports the sweep's
   wall time, the sum of the cells' own ``wall_s`` and the time of a second, no-op run of the same
   command (every cell finished: checked and skipped).

The machine is shared: the script prints the load average before each part.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import synthloop  # noqa: E402
from synthloop.executors import make_executor  # noqa: E402
from synthloop.sweep import plan_sweep, run_sweep  # noqa: E402

TINY = ["task.d=3", "task.T=20", "generations=5"]
TINY_REPLICATES = 10


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def tiny_sweep(cells: int):
    # Distinct seeds make distinct cells of one experiment: same compute in every cell.
    return plan_sweep("regression-workflows", [f"seed={','.join(str(s) for s in range(cells))}"], TINY, TINY_REPLICATES)


def own_compute(cells: int) -> float:
    """Median seconds of one cell's ``synthloop.run`` in this process, nothing written."""
    times = []
    for seed in range(cells):
        start = time.perf_counter()
        synthloop.run("regression-workflows", overrides=TINY, replicates=TINY_REPLICATES, seed=seed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_sweep(cells: int, kind: str, workers: int, root: Path) -> tuple[float, float]:
    """Wall time of the sweep, and the median ``wall_s`` its workers recorded per cell."""
    out = root / f"{kind}-{workers}-{cells}"
    planned = tiny_sweep(cells)
    start = time.perf_counter()
    index = run_sweep(planned, out, make_executor(workers, kind))
    wall = time.perf_counter() - start
    assert (index["status"] == "finished").all(), index[["cell", "status", "error"]]
    shutil.rmtree(out)
    return wall, float(index["wall_s"].median())


def overhead(sizes: tuple[int, int], workers: int, kinds: list[str], root: Path) -> None:
    print(f"\n## Sweep overhead per cell ({load()})")
    synthloop.run("regression-workflows", overrides=TINY, replicates=TINY_REPLICATES)  # warm imports
    compute = own_compute(10)
    print(f"cell: regression d=3, T=20, 5 generations × {TINY_REPLICATES} replicates, 3 workflows")
    print(f"its own compute (synthloop.run in this process, nothing written): median {compute * 1e3:.1f} ms")
    print("| executor | workers | N₁ cells | wall | N₂ cells | wall | start-up a | worker-s per cell b·workers | recorded per cell (run + run directory) | overhead beyond the run directory |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        n_workers = 1 if kind == "serial" else workers
        executor = "local" if kind == "serial" else kind
        try:
            w1, c1 = time_sweep(sizes[0], executor, n_workers, root)
            w2, c2 = time_sweep(sizes[1], executor, n_workers, root)
        except Exception as error:  # noqa: BLE001 — e.g. Ray cannot start here: report and go on
            print(f"| {kind} | {n_workers} | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} |")
            continue
        per_cell = (w2 - w1) / (sizes[1] - sizes[0])
        startup = w1 - per_cell * sizes[0]
        worker_s = per_cell * n_workers
        recorded = float(np.median([c1, c2]))
        print(
            f"| {kind} | {n_workers} | {sizes[0]} | {w1:.2f} s | {sizes[1]} | {w2:.2f} s | {startup:.2f} s | "
            f"{worker_s * 1e3:.0f} ms | {recorded * 1e3:.0f} ms | {(worker_s - recorded) * 1e3:+.0f} ms |"
        )


def cli_sweep(args: list[str], out: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "synthloop.cli", "sweep", *args, "--out", str(out), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    first = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return first, time.perf_counter() - start


def grids(workers: int, gaussian_d: list[int], root: Path) -> None:
    sigmas = ",".join(repr(round(math.sqrt(s2), 12)) for s2 in (0.1, 1.0, 10.0))
    runs = [
        ("regression (Collapse-or-Thrive, 75 cells)", ["collapse-or-thrive-regression", "--grid", "task.d=1,3,10,32,100", "--grid", "task.T=10,32,100,316,1000", "--grid", f"task.sigma={sigmas}"]),
        (f"Gaussian ({5 * len(gaussian_d)} cells, d ∈ {{{','.join(map(str, gaussian_d))}}})", ["gaussian-workflows", "--grid", f"task.d={','.join(map(str, gaussian_d))}", "--grid", "task.T=10,32,100,316,1000"]),
    ]
    print(f"\n## The Collapse-or-Thrive grids through `synthloop sweep` ({workers} workers)")
    print("| grid | cells | sweep wall | Σ cells' wall_s | Σ / (wall × workers) | re-run (all cells skipped) | load before |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, args in runs:
        out = root / name.split()[0]
        before = load()
        first, again = cli_sweep([*args, "--workers", str(workers)], out)
        index = pd.read_parquet(out / "index.parquet")
        assert (index["status"] == "finished").all()
        total = float(index["wall_s"].sum())
        print(f"| {name} | {len(index)} | {first:.1f} s | {total:.1f} s | {total / (first * workers):.0%} | {again:.2f} s | {before} |")
        slowest = index.loc[index["wall_s"].idxmax()]
        print(f"  slowest cell: {slowest['cell']} {slowest['wall_s']:.1f} s")
        shutil.rmtree(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="overhead only, 4 and 12 cells")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    parser.add_argument("--no-grids", action="store_true", help="skip the Collapse-or-Thrive grids")
    parser.add_argument("--gaussian-d", default="1,3,10,31", help="Gaussian grid dimensions (100 needs ≈5 GiB per worker)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, synthloop {version('synthloop')}")
    kinds = ["serial", "local"] + ([] if args.no_ray else ["ray"])
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        overhead((4, 12) if args.quick else (8, 32), args.workers, kinds, root)
        if not (args.quick or args.no_grids):
            grids(args.workers, [int(d) for d in args.gaussian_d.split(",")], root)


if __name__ == "__main__":
    main()
