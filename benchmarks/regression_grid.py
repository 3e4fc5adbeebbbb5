#!/usr/bin/env python
"""Benchmark: the full Collapse-or-Thrive linear-regression grid, against a per-replicate refit.

    python benchmarks/regression_grid.py            # full grid ~45 s, ~5 min with the baseline
    python benchmarks/regression_grid.py --quick    # smoke test, a few seconds

1. Grid: d ∈ {1,3,10,32,100} × T ∈ {10,32,100,316,1000} × σ² ∈ {0.1,1,10}, 100 generations,
   100 replicates, workflows replace / accumulate / accumulate-subsample, fixed design — 75
   cells, each one ``synthloop.run``, in a process pool of ``os.cpu_count()`` workers with one
   BLAS thread each. Reports the wall time of the whole grid and the peak RSS.
2. Baseline: a plain per-replicate implementation (what the paper's code does: for every
   replicate and generation, stack the training data and refit with ``np.linalg.pinv``), timed
   on a sample of cells against ``synthloop.run`` of the same cell alone, in this process, with
   one BLAS thread. Where a full baseline cell would exceed ~60 s it runs on fewer replicates
   and its time is scaled linearly to the full replicate count (marked in the table).
3. Sanity: (d=10, T=100, σ²=1) against the published numbers and the exact theory, and the
   baseline vs synthloop means on the sampled cells.

See docs/benchmarks.md for the measured numbers.
"""

import os

# One BLAS thread per process, set before numpy is imported anywhere (the pool's workers inherit
# it). Multithreaded OpenBLAS on these small batched matrices is ~3x slower than one thread.
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
from dataclasses import dataclass  # noqa: E402
from importlib.metadata import version  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import synthloop  # noqa: E402

DS = (1, 3, 10, 32, 100)
TS = (10, 32, 100, 316, 1000)
SIGMA2S = (0.1, 1.0, 10.0)
WORKFLOWS = ("replace", "accumulate", "accumulate-subsample")
BASELINE_BUDGET_S = 60.0  # a baseline cell estimated above this runs on fewer replicates
BASELINE_SEED = 20240611

# Sampled baseline cells (workflow, d, T, σ²). Accumulate cells first: they carry the 100x goal.
# The accumulate sample spans the grid: the T ≈ 10d diagonal, T < d and T >> d, so that its
# geometric mean is not just the large cells (the ratio grows with d and T).
ISSUE_CELLS = [(3, 32, 1.0), (10, 100, 1.0), (32, 316, 1.0)]  # the cells named in the issue
FULL_SAMPLE = [
    ("accumulate", 1, 10, 1.0),
    ("accumulate", 3, 32, 1.0),
    ("accumulate", 10, 100, 1.0),
    ("accumulate", 32, 100, 1.0),
    ("accumulate", 32, 316, 1.0),
    ("accumulate", 100, 1000, 1.0),
    ("accumulate", 100, 10, 1.0),
    ("accumulate", 1, 1000, 1.0),
    ("replace", 10, 100, 1.0),
    ("replace", 32, 316, 1.0),
    ("accumulate-subsample", 10, 100, 1.0),
    ("accumulate-subsample", 32, 316, 1.0),
]
QUICK_SAMPLE = [("accumulate", 10, 100, 1.0)]
SANITY_CELL = (10, 100, 1.0)


def experiment(d: int, T: int, sigma2: float, generations: int, replicates: int, workflows=WORKFLOWS):
    return synthloop.Experiment.from_dict({
        "task": {"d": d, "T": T, "sigma": math.sqrt(sigma2)},
        "generations": generations,
        "replicates": replicates,
        "workflows": list(workflows),
    })


def maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Grid (runs in the pool's workers)
# --------------------------------------------------------------------------------------------

def run_cell(cell: tuple[int, int, float, int, int]) -> dict:
    """One grid cell: time ``synthloop.run`` and keep a few summary numbers (not the frames)."""
    d, T, sigma2, generations, replicates = cell
    start, cpu = time.perf_counter(), time.process_time()
    result = synthloop.run(experiment(d, T, sigma2, generations, replicates))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    m = result.metrics
    m = m[m["metric"] == "excess_risk"]
    stats = {}
    for (workflow, generation), values in m.groupby(["workflow", "generation"])["value"]:
        if generation in (0, generations - 1, generations):
            stats[(workflow, int(generation))] = (float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))))
    th = result.theory[(result.theory["metric"] == "excess_risk") & (result.theory["generation"] == generations - 1)]
    theory = {(w, k): float(v) for w, k, v in th[["workflow", "kind", "value"]].itertuples(index=False)}
    per_workflow = result.generations.groupby("workflow")["wall_time_s"].sum().to_dict()
    return {
        "cell": (d, T, sigma2),
        "time_s": elapsed,
        "cpu_s": cpu,
        "per_workflow_s": {k: float(v) for k, v in per_workflow.items()},
        "stats": stats,
        "theory": theory,
        "pid": os.getpid(),
        "worker_maxrss_mib": maxrss_mib(resource.RUSAGE_SELF),
    }


def run_grid(generations: int, replicates: int, workers: int) -> tuple[list[dict], float]:
    cells = [(d, T, s2, generations, replicates) for d in DS for T in TS for s2 in SIGMA2S]
    # Largest cells first, so that no big cell is left to run alone at the end.
    cells.sort(key=lambda c: c[1] * (c[0] ** 2 + 100 * c[0] + 3000), reverse=True)
    context = mp.get_context("fork") if sys.platform.startswith("linux") else None
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_cell, cell) for cell in cells]
        results = [f.result() for f in as_completed(futures)]
    wall = time.perf_counter() - start  # includes starting and joining the workers
    return results, wall


# --------------------------------------------------------------------------------------------
# Baseline: straightforward per-replicate refit, as in the paper's code
# --------------------------------------------------------------------------------------------

def pinv(a: np.ndarray) -> np.ndarray:
    # Cutoff max(M, N)·eps·s_max (as lstsq and synthloop use). numpy's default, 1e-15·s_max, is
    # below the rounding noise of a stacked rank-deficient design (accumulate with T < d): it
    # inverts noise singular values and the baseline's error blows up to ~1e26.
    return np.linalg.pinv(a, rtol=None)


def baseline_replicate(d: int, T: int, sigma: float, workflow: str, generations: int, rng: np.random.Generator) -> np.ndarray:
    """Errors ‖w_g − w*‖² for g = 0..generations of one replicate, refitting with pinv every time."""
    errors = np.empty(generations + 1)
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)  # unit norm, as synthloop's default w_norm = 1
    X = rng.standard_normal((T, d))  # fixed design: drawn once, relabelled every generation
    y = X @ w_star + sigma * rng.standard_normal(T)
    xs, ys = [X], [y]
    w = pinv(X) @ y
    errors[0] = np.sum((w - w_star) ** 2)
    for g in range(1, generations + 1):
        y_new = X @ w + sigma * rng.standard_normal(T)  # labelled by generation g - 1's model
        if workflow == "replace":
            X_train, y_train = X, y_new
        else:
            xs.append(X)
            ys.append(y_new)
            X_all, y_all = np.concatenate(xs), np.concatenate(ys)
            if workflow == "accumulate":
                X_train, y_train = X_all, y_all
            elif workflow == "accumulate-subsample":
                idx = rng.choice(len(y_all), size=T, replace=False)
                X_train, y_train = X_all[idx], y_all[idx]
            else:
                raise ValueError(workflow)
        w = pinv(X_train) @ y_train
        errors[g] = np.sum((w - w_star) ** 2)
    return errors


def baseline_cell(workflow: str, d: int, T: int, sigma2: float, generations: int, replicates: int) -> dict:
    """Time the baseline; one pilot replicate decides whether all replicates fit the budget."""
    seeds = np.random.SeedSequence(BASELINE_SEED, spawn_key=(d, T, int(sigma2 * 1000))).spawn(replicates)
    sigma = math.sqrt(sigma2)
    start = time.perf_counter()
    rows = [baseline_replicate(d, T, sigma, workflow, generations, np.random.default_rng(seeds[0]))]
    pilot = time.perf_counter() - start
    run_reps = replicates if pilot * replicates <= BASELINE_BUDGET_S else max(1, min(10, int(BASELINE_BUDGET_S // pilot)))
    for r in range(1, run_reps):
        rows.append(baseline_replicate(d, T, sigma, workflow, generations, np.random.default_rng(seeds[r])))
    measured = time.perf_counter() - start
    return {
        "errors": np.stack(rows),  # (run_reps, generations + 1)
        "measured_s": measured,
        "replicates_run": run_reps,
        "time_s": measured * replicates / run_reps,  # linear in replicates
    }


def synthloop_cell(workflow: str, d: int, T: int, sigma2: float, generations: int, replicates: int) -> dict:
    """``synthloop.run`` of the same cell and workflow alone, in this process; best of up to 3."""
    exp = experiment(d, T, sigma2, generations, replicates, workflows=[workflow])
    times, result = [], None
    while len(times) < 3 and sum(times) < 5.0:
        start = time.perf_counter()
        result = synthloop.run(exp)
        times.append(time.perf_counter() - start)
    m = result.metrics[result.metrics["metric"] == "excess_risk"]
    errors = m.pivot(index="replicate", columns="generation", values="value").to_numpy()
    th = result.theory[(result.theory["metric"] == "excess_risk") & (result.theory["kind"] == "exact")]
    theory = dict(zip(th["generation"], th["value"]))
    return {"errors": errors, "time_s": min(times), "repeats": len(times), "theory": theory}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def mean_se(a: np.ndarray) -> tuple[float, float]:
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan"))


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


@dataclass
class Settings:
    generations: int
    replicates: int
    sample: list
    workers: int


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 generations, 20 replicates, one baseline cell")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: os.cpu_count())")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline comparison")
    parser.add_argument("--repeat", type=int, default=1, help="run the grid this many times and report the fastest (default 1)")
    args = parser.parse_args(argv)
    s = Settings(20, 20, QUICK_SAMPLE, args.workers) if args.quick else Settings(100, 100, FULL_SAMPLE, args.workers)
    G, R = s.generations, s.replicates
    console = Console(width=None if sys.stdout.isatty() else 120)

    console.print(
        f"[bold]synthloop regression grid[/] — {len(DS) * len(TS) * len(SIGMA2S)} cells × {len(WORKFLOWS)} workflows, "
        f"{G} generations, {R} replicates, fixed design, OLS"
    )
    console.print(
        f"python {platform.python_version()}, numpy {np.__version__}, synthloop {version('synthloop')}, "
        f"cpu_count={os.cpu_count()}, workers={s.workers}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )

    # 1. Grid ---------------------------------------------------------------------------------
    load_before = os.getloadavg()
    walls, results, wall = [], None, math.inf
    for _ in range(max(1, args.repeat)):
        got, took = run_grid(G, R, s.workers)
        walls.append(took)
        if took < wall:
            results, wall = got, took
    load_after = os.getloadavg()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (children.ru_utime + children.ru_stime) / len(walls)
    parent_rss = maxrss_mib(resource.RUSAGE_SELF)
    children_rss = maxrss_mib(resource.RUSAGE_CHILDREN)
    worker_rss = max(r["worker_maxrss_mib"] for r in results)
    serial = sum(r["time_s"] for r in results)
    by_cell = {r["cell"]: r for r in results}

    table = Table(title="Grid: seconds per (d, T), sum of the 3 σ² cells")
    table.add_column("d \\ T", justify="right")
    for T in TS:
        table.add_column(str(T), justify="right")
    for d in DS:
        table.add_row(str(d), *[fmt_s(sum(by_cell[(d, T, s2)]["time_s"] for s2 in SIGMA2S)) for T in TS])
    console.print(table)

    shares = {w: sum(r["per_workflow_s"].get(w, 0.0) for r in results) for w in WORKFLOWS}
    other = serial - sum(shares.values())
    table = Table(title="Where the time goes (sum over the 75 cells, in the workers)")
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for name, t in [*shares.items(), ("other (frames, theory, setup)", other)]:
        table.add_row(name, fmt_s(t), f"{100 * t / serial:.0f}%")
    table.add_row("[bold]sum of cell times[/]", fmt_s(serial), "100%")
    console.print(table)
    console.print("  (replace runs first in each cell, so its generation 0 also holds drawing the real data and the SVD of X)")

    table = Table(title="Headline")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"grid wall time, pool of {s.workers}" + (f" (best of {len(walls)})" if len(walls) > 1 else ""), f"[bold]{wall:.2f} s[/]")
    if len(walls) > 1:
        table.add_row("all grid wall times", ", ".join(f"{w:.1f}" for w in walls) + " s")
    table.add_row("worker CPU time per grid (user + sys)", f"{worker_cpu:.1f} s")
    table.add_row("sum of per-cell CPU times (process_time)", f"{sum(r['cpu_s'] for r in results):.1f} s")
    table.add_row("sum of per-cell times (≈ one process)", f"{serial:.2f} s")
    table.add_row("parallel speed-up", f"{serial / wall:.2f}×")
    table.add_row("slowest cell", f"{max(r['time_s'] for r in results):.2f} s  (d, T, σ²) = {max(results, key=lambda r: r['time_s'])['cell']}")
    table.add_row("peak RSS, parent (RUSAGE_SELF)", f"{parent_rss:.0f} MiB")
    table.add_row("peak RSS, largest worker (RUSAGE_CHILDREN)", f"{children_rss:.0f} MiB")
    table.add_row("peak RSS, largest worker (self-reported)", f"{worker_rss:.0f} MiB")
    table.add_row("load average (1 min) before / after the grid", f"{load_before[0]:.2f} / {load_after[0]:.2f}")
    console.print(table)
    if load_before[0] > 0.5:
        console.print(f"  [yellow]warning: the machine was busy before the grid (load {load_before[0]:.2f}); timings are inflated[/]")
    if G == 100 and R == 100:
        verdict = "met" if wall < 60 else "NOT met"
        stretch = "met" if wall < 10 else "not met"
        console.print(f"  goal: grid < 60 s on {s.workers} workers — [bold]{verdict}[/]; stretch goal < 10 s — {stretch}")

    # 3a. Sanity cell from the grid -----------------------------------------------------------
    if SANITY_CELL in by_cell:
        cell = by_cell[SANITY_CELL]
        d, T, s2 = SANITY_CELL
        first_published = s2 * d / (T - d - 1)
        published = {
            "replace": f"≈ 11 (= {G} × first error)" if G == 100 else f"≈ {G} × first error",
            "accumulate": f"plateau ≈ π²/6 × first ≈ {math.pi ** 2 / 6 * first_published:.3f}",
            "accumulate-subsample": "between the two (no closed form)",
        }
        table = Table(title=f"Sanity (d={d}, T={T}, σ²={s2:g}): mean excess risk ± SE over {R} replicates")
        table.add_column("workflow")
        table.add_column("gen 0", justify="right")
        table.add_column(f"gen {G - 1}", justify="right")
        table.add_column(f"theory, gen {G - 1}", justify="right")
        table.add_column("published")
        for w in WORKFLOWS:
            m0, se0 = cell["stats"][(w, 0)]
            m1, se1 = cell["stats"][(w, G - 1)]
            th = cell["theory"].get((w, "exact"))
            bound = cell["theory"].get((w, "bound"))
            th_text = "—" if th is None else f"{th:.4g}" + ("" if bound is None else f" (bound {bound:.4g})")
            table.add_row(w, f"{m0:.4f} ± {se0:.4f}", f"{m1:.4g} ± {se1:.2g}", th_text, published[w])
        console.print(table)
        console.print(f"  published first error ≈ 0.11 (σ²d/(T−d−1) = {first_published:.4f})")

    if args.no_baseline:
        return 0

    # 2. Baseline vs synthloop, single process --------------------------------------------------
    table = Table(title=f"Baseline (per-replicate pinv refit) vs synthloop, one process, one BLAS thread, {G} generations × {R} replicates")
    for col in ("workflow", "d", "T", "σ²", "baseline s", "replicates run", "synthloop s", "ratio"):
        table.add_column(col, justify="left" if col == "workflow" else "right")
    rows, agreement, any_scaled = [], [], False
    for workflow, d, T, s2 in s.sample:
        base = baseline_cell(workflow, d, T, s2, G, R)
        ours = synthloop_cell(workflow, d, T, s2, G, R)
        ratio = base["time_s"] / ours["time_s"]
        rows.append((workflow, ratio, (d, T, s2)))
        scaled = base["replicates_run"] < R
        any_scaled |= scaled
        table.add_row(
            workflow, str(d), str(T), f"{s2:g}",
            f"{fmt_s(base['time_s'])}" + (" *" if scaled else ""),
            f"{base['replicates_run']}" + (f" ({fmt_s(base['measured_s'])} s)" if scaled else ""),
            f"{ours['time_s']:.3f}",
            f"[bold]{ratio:,.0f}×[/]",
        )
        agreement.append((workflow, d, T, s2, base["errors"], ours["errors"], ours["theory"]))
    console.print(table)
    console.print("  synthloop: best of up to 3 runs of the cell with that workflow alone; baseline: one run")
    if any_scaled:
        console.print(f"  * baseline run on fewer replicates (measured time in brackets) and scaled linearly to {R} replicates")
    def gmean(values):
        return math.exp(sum(math.log(v) for v in values) / len(values))

    full = G == 100 and R == 100
    acc = [r for w, r, _ in rows if w == "accumulate"]
    if acc:
        console.print(f"  geometric mean ratio over the {len(acc)} sampled accumulate cells: [bold]{gmean(acc):,.0f}×[/]"
                      + (f" — goal ≥ 100×: {'met' if gmean(acc) >= 100 else 'NOT met'}" if full else "")
                      + f"; {sum(r >= 100 for r in acc)} of {len(acc)} cells ≥ 100×")
    issue = [r for w, r, c in rows if w == "accumulate" and c in ISSUE_CELLS]
    if len(issue) == len(ISSUE_CELLS):
        console.print(f"  geometric mean over the issue's cells (d, T) = (3, 32), (10, 100), (32, 316): [bold]{gmean(issue):,.0f}×[/]")
    other_rows = [r for w, r, _ in rows if w != "accumulate"]
    if other_rows:
        console.print(f"  geometric mean ratio over the {len(other_rows)} replace/subsample cells: {gmean(other_rows):,.0f}×")

    # 3b. Statistical agreement baseline vs synthloop -----------------------------------------
    table = Table(title="Agreement: mean excess risk ± SE, baseline vs synthloop (independent random streams)")
    for col in ("workflow", "d", "T", "σ²", "gen", "baseline", "synthloop", "z", "theory"):
        table.add_column(col, justify="left" if col == "workflow" else "right")
    worst = 0.0
    for workflow, d, T, s2, b, o, th in agreement:
        for g in sorted({0, G // 2, G}):
            mb, sb = mean_se(b[:, g])
            mo, so = mean_se(o[:, g])
            z = (mb - mo) / math.sqrt(sb**2 + so**2) if b.shape[0] > 1 else float("nan")
            if not math.isnan(z):
                worst = max(worst, abs(z))
            table.add_row(
                workflow, str(d), str(T), f"{s2:g}", str(g),
                f"{mb:.4g} ± {sb:.2g} (n={b.shape[0]})", f"{mo:.4g} ± {so:.2g} (n={o.shape[0]})",
                "—" if math.isnan(z) else f"{z:+.2f}",
                f"{th[g]:.4g}" if g in th else "—",
            )
    console.print(table)
    n_cmp = sum(b.shape[0] > 1 for *_, b, _o, _t in agreement) * len({0, G // 2, G})
    console.print(f"  largest |z| = {worst:.2f} ({'consistent' if worst < 3.5 else 'CHECK'}: {n_cmp} comparisons, "
                  "|z| < 3.5 expected; rows with n=1 have no SE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
