#!/usr/bin/env python
"""Benchmark: the full Collapse-or-Thrive multivariate-Gaussian grid, against a per-replicate refit.

    python benchmarks/gaussian_grid.py            # full grid + baseline sample, a few minutes
    python benchmarks/gaussian_grid.py --quick    # smoke test, seconds

1. Grid: d ∈ {1,3,10,31,100} × T ∈ {10,32,100,316,1000}, 100 generations, 100 replicates,
   workflows replace / accumulate / accumulate-subsample, MLE covariance (Kazdan et al. 2024)
   — 25 cells, each one ``synthloop.run`` (metrics, theory and frames included), in a process
   pool of ``os.cpu_count()`` workers with one BLAS thread each. Reports the wall time of the
   grid, the peak RSS (``getrusage`` of this process and of its children), and the seconds per
   generation of each workflow as the loop records them (``generations.wall_time_s``: synthesis,
   fit and evaluation) — accumulate should cost no more than 1.2× replace per generation — and,
   since the machine may be shared, the CPU seconds of each workflow run alone in the worker.
2. Baseline: a plain per-replicate loop that samples rows, keeps every row, and refits mean
   and covariance on the concatenated (or subsampled) rows with ``np.cov`` — what the paper's
   code does — timed on a sample of cells against ``synthloop.run`` of the same cell and
   workflow alone, in this process, with one BLAS thread. A baseline cell that would take more
   than ~60 s runs on fewer replicates and is scaled linearly (marked).
3. Sanity: the d = 1 cells against the published numbers (spec §2) and the exact theory, and
   the baseline's means against synthloop's on the sampled cells.
"""

import os

# One BLAS thread per process, set before numpy is imported anywhere (the pool's workers inherit it).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from importlib.metadata import version  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import synthloop  # noqa: E402

DS = (1, 3, 10, 31, 100)
TS = (10, 32, 100, 316, 1000)
WORKFLOWS = ("replace", "accumulate", "accumulate-subsample")
METRICS = ("mean_sq_error", "trace_ratio")
BASELINE_BUDGET_S = 60.0
BASELINE_SEED = 20241021

FULL_SAMPLE = [  # (workflow, d, T): accumulate first, its cost grows with the generation in the baseline
    ("accumulate", 1, 100),
    ("accumulate", 10, 100),
    ("accumulate", 31, 316),
    ("accumulate", 100, 1000),
    ("replace", 10, 100),
    ("replace", 100, 1000),
    ("accumulate-subsample", 10, 100),
    ("accumulate-subsample", 31, 316),
]
QUICK_SAMPLE = [("accumulate", 10, 100)]

# Spec §2 (d = 1, σ² = 1, ~100 seeds), at the paper's generations 1/10/50/100 = synthloop g 0/9/49/99.
PUBLISHED = {
    ("replace", 10, "mean_sq_error"): (0.108, 0.541, 0.941, 0.926),
    ("replace", 100, "mean_sq_error"): (0.0087, 0.094, 0.339, 0.584),
    ("accumulate", 10, "mean_sq_error"): (0.101, 0.145, 0.160, 0.158),
    ("accumulate", 100, "mean_sq_error"): (0.0089, 0.0151, 0.0155, 0.0160),
    ("replace", 10, "trace_ratio"): (0.964, 0.301, 0.003, 0.000),
}
PAPER_GENERATIONS = (0, 9, 49, 99)


def experiment(d: int, T: int, generations: int, replicates: int, workflows=WORKFLOWS):
    return synthloop.Experiment.from_dict({
        "task": {"name": "gaussian", "d": d, "T": T},
        "generations": generations,
        "replicates": replicates,
        "workflows": list(workflows),
    })


def maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Grid (runs in the pool's workers)
# --------------------------------------------------------------------------------------------

def run_cell(cell: tuple[int, int, int, int]) -> dict:
    d, T, generations, replicates = cell
    start, cpu_start = time.perf_counter(), time.process_time()
    result = synthloop.run(experiment(d, T, generations, replicates))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    m = result.metrics[result.metrics["metric"].isin(METRICS)]
    stats = {}
    for (workflow, metric, generation), values in m.groupby(["workflow", "metric", "generation"])["value"]:
        stats[(workflow, metric, int(generation))] = (float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))))
    th = result.theory[result.theory["metric"].isin(METRICS)]
    theory = {(w, k, int(g)): float(v) for w, k, g, v in th[["workflow", "metric", "generation", "value"]].itertuples(index=False)}
    cost = result.generations
    per_workflow = {}
    for w, c in cost.groupby("workflow"):
        t = c.sort_values("generation")["wall_time_s"].to_numpy()
        # (all generations s, generations >= 1 s, their count, mean of g 1–10, mean of the last 10)
        per_workflow[w] = (float(t.sum()), float(t[1:].sum()), len(t) - 1, float(t[1:11].mean()), float(t[-10:].mean()))
    return {
        "cell": (d, T),
        "time_s": elapsed,
        "cpu_s": cpu,  # process CPU time: robust to other users loading the machine
        "per_workflow": per_workflow,  # workflow -> (all generations s, generations >= 1 s, count)
        "stats": stats,
        "theory": theory,
        "worker_maxrss_mib": maxrss_mib(resource.RUSAGE_SELF),
    }


# Replace and accumulate alternate (ABBAAB) so that load changes during the measurement hit both
# alike; each keeps its least-disturbed (minimum) time. Accumulate-subsample runs once.
CPU_ORDER = ("replace", "accumulate", "accumulate", "replace", "replace", "accumulate", "accumulate-subsample")


def workflow_cpu(cell: tuple[int, int, int, int]) -> tuple[tuple[int, int], dict]:
    """CPU seconds of each workflow of a cell run alone: robust to other users loading the
    machine, which the loop's wall times per generation are not (though not immune: a busy
    sibling hyperthread slows the same instructions). Timed after the grid."""
    d, T, generations, replicates = cell
    out = {}
    for w in CPU_ORDER:
        cpu_start = time.process_time()
        synthloop.run(experiment(d, T, generations, replicates, workflows=[w]))
        out[w] = min(out.get(w, math.inf), time.process_time() - cpu_start)
    return (d, T), out


def run_grid(generations: int, replicates: int, workers: int) -> tuple[list[dict], float, float]:
    cells = [(d, T, generations, replicates) for d in DS for T in TS]
    # Largest first, so that no big cell is left to run alone at the end.
    cells.sort(key=lambda c: c[1] * c[0] * (c[0] + 10) + 50 * c[0] ** 3, reverse=True)
    context = mp.get_context("fork") if sys.platform.startswith("linux") else None
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_cell, cell) for cell in cells]
        results = [f.result() for f in as_completed(futures)]
    wall = time.perf_counter() - start
    load = os.getloadavg()[0]
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        cpu = dict(pool.map(workflow_cpu, cells))
    for r in results:
        r["workflow_cpu_s"] = cpu[r["cell"]]
    return results, wall, load


# --------------------------------------------------------------------------------------------
# Baseline: a straightforward per-replicate loop, as in the paper's code
# --------------------------------------------------------------------------------------------

def baseline_replicate(d: int, T: int, workflow: str, generations: int, rng: np.random.Generator) -> np.ndarray:
    """Squared error of the mean per generation, refitting on the rows every time; also logs
    the trace and determinant ratios as Kazdan et al.'s code does."""
    errors = np.empty(generations + 1)
    x = rng.standard_normal((T, d))
    kept = [x]
    data = x
    for g in range(generations + 1):
        if g > 0:
            new = rng.multivariate_normal(mean, cov, size=T, method="cholesky" if d <= T - 1 else "eigh")
            if workflow == "replace":
                data = new
            else:
                kept.append(new)
                everything = np.concatenate(kept)
                data = everything if workflow == "accumulate" else everything[rng.choice(len(everything), T, replace=False)]
        mean = data.mean(axis=0)
        cov = np.atleast_2d(np.cov(data, rowvar=False, bias=True))
        errors[g] = mean @ mean
        _trace, _logdet = np.trace(cov) / d, np.linalg.slogdet(cov)[1]
    return errors


def baseline_cell(workflow: str, d: int, T: int, generations: int, replicates: int) -> dict:
    seeds = np.random.SeedSequence(BASELINE_SEED, spawn_key=(d, T)).spawn(replicates)
    start = time.perf_counter()
    rows = [baseline_replicate(d, T, workflow, generations, np.random.default_rng(seeds[0]))]
    pilot = time.perf_counter() - start
    run_reps = replicates if pilot * replicates <= BASELINE_BUDGET_S else max(2, min(replicates, int(BASELINE_BUDGET_S // pilot)))
    for r in range(1, run_reps):
        rows.append(baseline_replicate(d, T, workflow, generations, np.random.default_rng(seeds[r])))
    measured = time.perf_counter() - start
    return {"errors": np.stack(rows), "measured_s": measured, "replicates_run": run_reps, "time_s": measured * replicates / run_reps}


def synthloop_cell(workflow: str, d: int, T: int, generations: int, replicates: int) -> dict:
    """``synthloop.run`` of the same cell and workflow alone, in this process; best of up to 3."""
    exp = experiment(d, T, generations, replicates, workflows=[workflow])
    times, result = [], None
    while len(times) < 3 and sum(times) < 5.0:
        start = time.perf_counter()
        result = synthloop.run(exp)
        times.append(time.perf_counter() - start)
    m = result.metrics[result.metrics["metric"] == "mean_sq_error"]
    errors = m.pivot(index="replicate", columns="generation", values="value").to_numpy()
    loop_s = float(result.generations["wall_time_s"].sum())
    return {"errors": errors, "time_s": min(times), "loop_s": loop_s}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def grid_figure(by_cell: dict, generations: int, replicates: int, path: str, metric: str = "mean_sq_error") -> None:
    """Kazdan et al.'s Gaussian panel grid: one panel per (d, T), ``metric`` vs generation for each
    workflow (mean ± 95% CI band over replicates), exact theory dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(DS), len(TS), figsize=(3.0 * len(TS), 2.4 * len(DS)), sharex=True, squeeze=False)
    g = np.arange(generations + 1)
    for i, d in enumerate(DS):
        for j, T in enumerate(TS):
            ax, cell = axes[i, j], by_cell[(d, T)]
            for k, w in enumerate(WORKFLOWS):
                mean = np.array([cell["stats"][(w, metric, x)][0] for x in g])
                half = 1.96 * np.array([cell["stats"][(w, metric, x)][1] for x in g])
                ax.plot(g, mean, color=f"C{k}", lw=1.2, label=w)
                ax.fill_between(g, mean - half, mean + half, color=f"C{k}", alpha=0.2, lw=0)
                if (w, metric, 0) in cell["theory"]:
                    ax.plot(g, [cell["theory"][(w, metric, x)] for x in g], "--", color=f"C{k}", lw=0.9)
            ax.set_yscale("log")
            ax.set_title(f"d={d}, T={T}", fontsize=9)
            if i == len(DS) - 1:
                ax.set_xlabel("generation")
            if j == 0:
                ax.set_ylabel("‖μ̂ − μ‖² (x²)" if metric == "mean_sq_error" else metric)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Gaussian fitting, MLE covariance, σ²=1: {metric} over {replicates} replicates (band: 95% CI; dashed: exact theory)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 generations, 20 replicates, one baseline cell")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: os.cpu_count())")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline comparison")
    parser.add_argument("--figure", default="gaussian_grid.png", help="where to write the (d, T) panel grid (default: %(default)s)")
    args = parser.parse_args(argv)
    G, R, sample = (20, 20, QUICK_SAMPLE) if args.quick else (100, 100, FULL_SAMPLE)
    console = Console(width=None if sys.stdout.isatty() else 130)
    console.print(f"[bold]synthloop Gaussian grid[/] — {len(DS) * len(TS)} cells × {len(WORKFLOWS)} workflows, "
                  f"{G} generations, {R} replicates, MLE covariance")
    console.print(f"python {platform.python_version()}, numpy {np.__version__}, synthloop {version('synthloop')}, "
                  f"cpu_count={os.cpu_count()}, workers={args.workers}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")

    # 1. Grid ---------------------------------------------------------------------------------
    load_start = os.getloadavg()[0]
    results, wall, load_grid = run_grid(G, R, args.workers)
    parent_rss, children_rss = maxrss_mib(resource.RUSAGE_SELF), maxrss_mib(resource.RUSAGE_CHILDREN)
    serial = sum(r["time_s"] for r in results)
    by_cell = {r["cell"]: r for r in results}

    table = Table(title="Grid: seconds per cell (synthloop.run, 3 workflows, in a worker)")
    table.add_column("d \\ T", justify="right")
    for T in TS:
        table.add_column(str(T), justify="right")
    for d in DS:
        table.add_row(str(d), *[fmt_s(by_cell[(d, T)]["time_s"]) for T in TS])
    console.print(table)

    table = Table(title="Seconds per generation (g ≥ 1; synthesis + fit + evaluation, summed over cells)")
    table.add_column("cells")
    for w in WORKFLOWS:
        table.add_column(w, justify="right")
    table.add_column("accumulate / replace", justify="right")
    table.add_column("accumulate, last 10 / first 10 generations", justify="right")
    ratios = {}
    for label, cells in [*((f"d = {d}", [(d, T) for T in TS]) for d in DS), ("all 25", list(by_cell))]:
        per = {}
        for w in WORKFLOWS:
            seconds = sum(by_cell[c]["per_workflow"][w][1] for c in cells)
            count = sum(by_cell[c]["per_workflow"][w][2] for c in cells)
            per[w] = seconds / count
        ratios[label] = per["accumulate"] / per["replace"]
        growth = sum(by_cell[c]["per_workflow"]["accumulate"][4] for c in cells) / sum(by_cell[c]["per_workflow"]["accumulate"][3] for c in cells)
        table.add_row(label, *[f"{per[w] * 1e3:.2f} ms" for w in WORKFLOWS], f"{ratios[label]:.2f}×", f"{growth:.2f}×")
    console.print(table)
    table = Table(title="CPU seconds per generation (process_time of each workflow run alone ÷ generations, summed over cells; "
                        "replace and accumulate: least of 3 alternating runs)")
    table.add_column("cells")
    for w in WORKFLOWS:
        table.add_column(w, justify="right")
    table.add_column("accumulate / replace", justify="right")
    cpu_ratios = {}
    for label, cells in [*((f"d = {d}", [(d, T) for T in TS]) for d in DS), ("all 25", list(by_cell))]:
        per = {w: sum(by_cell[c]["workflow_cpu_s"][w] for c in cells) / (len(cells) * G) for w in WORKFLOWS}
        cpu_ratios[label] = per["accumulate"] / per["replace"]
        table.add_row(label, *[f"{per[w] * 1e3:.2f} ms" for w in WORKFLOWS], f"{cpu_ratios[label]:.2f}×")
    console.print(table)
    cell_cpu = {c: r["cpu_s"] for c, r in by_cell.items()}
    balanced = max(sum(cell_cpu.values()) / args.workers, max(cell_cpu.values()))
    alone = {c: sum(r["workflow_cpu_s"].values()) for c, r in by_cell.items()}  # least-disturbed runs
    balanced_alone = max(sum(alone.values()) / args.workers, max(alone.values()))
    stats_only = sum(by_cell[c]["per_workflow"][w][0] for c in by_cell for w in ("replace", "accumulate"))
    loop_total = sum(sum(v[0] for v in r["per_workflow"].values()) for r in results)

    table = Table(title="Headline")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"grid wall time, pool of {args.workers}", f"[bold]{wall:.2f} s[/]")
    table.add_row("sum of per-cell times (≈ one process)", f"{serial:.2f} s")
    table.add_row("sum of per-cell CPU times (process_time)", f"{sum(r['cpu_s'] for r in results):.2f} s")
    table.add_row("  of which in the loop (synthesis, fits, metrics)", f"{loop_total:.2f} s")
    table.add_row("  of which outside it (frames, theory, setup)", f"{serial - loop_total:.2f} s")
    table.add_row("  of which replace + accumulate loops", f"{stats_only:.2f} s")
    slowest = max(results, key=lambda r: r["time_s"])
    table.add_row("slowest cell", f"{slowest['time_s']:.2f} s wall, {slowest['cpu_s']:.2f} s CPU  (d, T) = {slowest['cell']}")
    table.add_row("peak RSS, parent (RUSAGE_SELF)", f"{parent_rss:.0f} MiB")
    table.add_row("peak RSS, largest worker (RUSAGE_CHILDREN)", f"{children_rss:.0f} MiB")
    table.add_row("accumulate / replace per generation, all cells (wall)", f"{ratios['all 25']:.2f}×")
    table.add_row("accumulate / replace per generation, all cells (CPU)", f"{cpu_ratios['all 25']:.2f}×")
    table.add_row(f"unloaded estimate: max(CPU sum / {args.workers}, slowest cell CPU)", f"{balanced:.2f} s")
    table.add_row(f"  same, from the workflows run alone (Σ {sum(alone.values()):.1f} s CPU)", f"{balanced_alone:.2f} s")
    table.add_row("1-minute load average: start / after the grid / end", f"{load_start:.2f} / {load_grid:.2f} / {os.getloadavg()[0]:.2f}")
    console.print(table)
    if G == 100 and R == 100:
        console.print(f"  goal: grid < 30 s on {args.workers} workers — [bold]{'met' if wall < 30 else 'NOT met'}[/] "
                      f"(unloaded estimate {balanced:.1f} s / {balanced_alone:.1f} s: "
                      f"{'met' if max(balanced, balanced_alone) < 30 else 'met by one estimate' if min(balanced, balanced_alone) < 30 else 'NOT met'}); "
                      f"accumulate ≤ 1.2× replace per generation — wall [bold]{'met' if ratios['all 25'] <= 1.2 else 'NOT met'}[/], "
                      f"CPU [bold]{'met' if cpu_ratios['all 25'] <= 1.2 else 'NOT met'}[/]")

    grid_figure(by_cell, G, R, args.figure)
    console.print(f"figure: {args.figure} (Kazdan et al.'s (d, T) panel grid, squared error of the mean)")

    # 3a. Sanity: d = 1 against the published numbers and the theory --------------------------
    if G >= 99:
        table = Table(title=f"d = 1 vs published (spec §2) and theory: mean ± SE over {R} replicates at paper generations 1/10/50/100 (synthloop g 0/9/49/99)")
        for col in ("workflow", "T", "metric", "published", "synthloop", "theory (exact)"):
            table.add_column(col, justify="left" if col in ("workflow", "metric") else "right")
        for (w, T, metric), published in PUBLISHED.items():
            cell = by_cell[(1, T)]
            ours = " / ".join(f"{cell['stats'][(w, metric, g)][0]:.3g}±{cell['stats'][(w, metric, g)][1]:.1g}" for g in PAPER_GENERATIONS)
            th = " / ".join(f"{cell['theory'][(w, metric, g)]:.3g}" for g in PAPER_GENERATIONS)
            table.add_row(w, str(T), metric, " / ".join(f"{v:g}" for v in published), ours, th)
        console.print(table)

    if args.no_baseline:
        return 0

    # 2. Baseline vs synthloop, single process --------------------------------------------------
    table = Table(title=f"Baseline (per-replicate refit on the rows) vs synthloop, one process, one BLAS thread, {G} generations × {R} replicates")
    for col in ("workflow", "d", "T", "baseline s", "replicates run", "synthloop s", "of which loop s", "ratio"):
        table.add_column(col, justify="left" if col == "workflow" else "right")
    agreement, any_scaled = [], False
    for workflow, d, T in sample:
        base = baseline_cell(workflow, d, T, G, R)
        ours = synthloop_cell(workflow, d, T, G, R)
        scaled = base["replicates_run"] < R
        any_scaled |= scaled
        table.add_row(workflow, str(d), str(T), fmt_s(base["time_s"]) + (" *" if scaled else ""),
                      f"{base['replicates_run']}" + (f" ({fmt_s(base['measured_s'])} s)" if scaled else ""),
                      f"{ours['time_s']:.3f}", f"{ours['loop_s']:.3f}", f"[bold]{base['time_s'] / ours['time_s']:,.1f}×[/]")
        agreement.append((workflow, d, T, base["errors"], ours["errors"]))
    console.print(table)
    if any_scaled:
        console.print(f"  * baseline run on fewer replicates (measured time in brackets), scaled linearly to {R}")

    table = Table(title="Agreement: mean squared error of the mean ± SE, baseline vs synthloop (independent streams)")
    for col in ("workflow", "d", "T", "gen", "baseline", "synthloop", "z"):
        table.add_column(col, justify="left" if col == "workflow" else "right")
    worst = 0.0
    for workflow, d, T, b, o in agreement:
        for g in sorted({0, G // 2, G}):
            mb, sb = b[:, g].mean(), b[:, g].std(ddof=1) / math.sqrt(len(b))
            mo, so = o[:, g].mean(), o[:, g].std(ddof=1) / math.sqrt(len(o))
            z = (mb - mo) / math.hypot(sb, so)
            worst = max(worst, abs(z))
            table.add_row(workflow, str(d), str(T), str(g), f"{mb:.4g} ± {sb:.2g} (n={len(b)})", f"{mo:.4g} ± {so:.2g}", f"{z:+.2f}")
    console.print(table)
    console.print(f"  largest |z| = {worst:.2f} ({'consistent' if worst < 3.5 else 'CHECK'}; |z| < 3.5 expected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
