"""Command line: a thin layer over the Python API (``synthloop.run``, ``synthloop.load``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .validation import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run, predict and explain generate → verify → retrain loops.")
console = Console()
if not console.is_terminal:
    console = Console(width=160)  # tables piped to a file or CI log keep their columns
err_console = Console(stderr=True)
if not err_console.is_terminal:
    err_console = Console(stderr=True, width=200)  # one-line errors stay on one line in logs

SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key, e.g. --set task.d=32 (repeatable)")]


def _fail(error: Exception) -> None:
    for line in str(error).splitlines():
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, markup=True)
    raise typer.Exit(2)


@app.command("run")
def run_command(
    preset: Annotated[str, typer.Argument(help="preset name (see `synthloop list`) or TOML file")],
    set_: SetOption = None,
    replicates: Annotated[Optional[int], typer.Option(help="independent repetitions")] = None,
    seed: Annotated[Optional[int], typer.Option(help="experiment seed")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<name>); resumed if interrupted")] = None,
    overwrite: Annotated[bool, typer.Option(help="discard an existing run directory of a different experiment")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
):
    """Run an experiment, write its run directory, print theory beside measurement."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from . import api
    from .experiment import load_experiment

    try:
        experiment = load_experiment(preset, set_ or [])
        extra = {k: v for k, v in {"replicates": replicates, "seed": seed}.items() if v is not None}
        if extra:
            experiment = experiment.with_overrides(extra)
        out = out or Path("runs") / experiment.name
        total = len(experiment.workflows) * (experiment.generations + 1)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("generations × workflows"),
            TimeRemainingColumn(), console=err_console, disable=quiet, transient=True,
        ) as progress:
            bar = progress.add_task(f"{experiment.name} ({experiment.replicates} replicates)", total=total)

            def advance(workflow: str, record) -> None:
                progress.update(bar, advance=1, description=f"{experiment.name}: {workflow} g={record.generation}")

            result = api.run(experiment, out=out, overwrite=overwrite, on_generation=advance)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — finished generations are saved; run the same command to resume ({out})")
        raise typer.Exit(130)
    if not quiet:
        console.print(result.table())
        console.print(result.caption(), style="dim", highlight=False)
    console.print(f"run directory: [bold]{result.path}[/] (figure.png, metrics.parquet, summary.json)")


@app.command("list")
def list_command():
    """List the shipped presets, one line each."""
    from .experiment import list_presets

    table = Table(show_header=True, box=None)
    table.add_column("preset", style="bold")
    table.add_column("what it runs")
    for name, description in list_presets().items():
        table.add_row(name, description)
    console.print(table)


@app.command("config")
def config_command(preset: Annotated[str, typer.Argument(help="preset name or TOML file")], set_: SetOption = None):
    """Print the fully resolved config of a preset with overrides, as TOML."""
    from .experiment import load_experiment

    try:
        print(load_experiment(preset, set_ or []).to_toml(), end="")
    except ConfigError as error:
        _fail(error)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    metric: Annotated[Optional[str], typer.Option(help="metric to draw")] = None,
    scale: Annotated[Optional[str], typer.Option(help="y axis: both, linear or log")] = None,
):
    """Redraw a run's figure from its files and print its table."""
    import matplotlib.pyplot as plt

    from . import api
    from .store import RunStore

    try:
        result = api.load(run_dir)
        known = sorted(set(result.metrics["metric"]))
        if metric is not None and metric not in known:
            raise ConfigError(f"--metric must be one of {known}; got {metric!r}")
        if scale not in (None, "both", "linear", "log"):
            raise ConfigError(f"--scale must be one of 'both', 'linear', 'log'; got {scale!r}")
        fig = result.figure(metric=metric, scale=scale)
        RunStore(run_dir).write_figure(fig)
        plt.close(fig)
    except ConfigError as error:
        _fail(error)
    console.print(result.table(metric))
    console.print(result.caption(), style="dim", highlight=False)
    console.print(f"{result.status} run; figure redrawn: [bold]{Path(run_dir) / 'figure.png'}[/]")


@app.command("theory")
def theory_command(
    task: Annotated[str, typer.Argument(help="task name, e.g. regression")],
    workflow: Annotated[str, typer.Option(help="workflow name")] = "replace",
    generations: Annotated[int, typer.Option(help="last generation")] = 20,
    d: Annotated[Optional[int], typer.Option("--d", help="dimension")] = None,
    T: Annotated[Optional[int], typer.Option("--T", help="real samples")] = None,
    T0: Annotated[Optional[int], typer.Option("--T0", help="synthetic samples per generation")] = None,
    sigma: Annotated[Optional[float], typer.Option(help="label noise on real data")] = None,
    sigma0: Annotated[Optional[float], typer.Option(help="label noise on synthetic labels")] = None,
    design: Annotated[Optional[str], typer.Option(help="fixed or random")] = None,
    set_: SetOption = None,
):
    """Print a theory curve as a table, e.g. `synthloop theory regression --d 10 --T 100 --workflow replace`."""
    from . import api
    from .experiment import Experiment

    params = {k: v for k, v in {"d": d, "T": T, "T0": T0, "sigma": sigma, "sigma0": sigma0, "design": design}.items() if v is not None}
    try:
        experiment = Experiment.from_dict({"task": {"name": task, **params}, "workflows": [workflow], "generations": generations})
        if set_:
            experiment = experiment.with_overrides(set_)
        frame, notes = api.theory_frame(experiment)
    except ConfigError as error:
        _fail(error)
    key = experiment.workflows[0].key
    if frame.empty:
        console.print(f"no theory curve: {notes.get(key, 'none available')}")
        raise typer.Exit(1)
    wide = frame.pivot_table(index="generation", columns=["metric", "kind"], values="value", aggfunc="first", sort=False)
    table = Table(title=f"{experiment.build_task().describe()} — {key}", caption="; ".join(sorted(set(frame["source"]))))
    table.add_column("generation", justify="right")
    for metric, kind in wide.columns:
        table.add_column(f"{metric}\n({kind})", justify="right")
    for g, row in wide.iterrows():
        table.add_row(str(g), *(f"{v:.6g}" for v in row))
    console.print(table)


@app.command("verifier-quality")
def verifier_quality_command(
    csv: Annotated[Path, typer.Argument(help="CSV file: one audited synthetic example per row")],
    kept: Annotated[str, typer.Option(help="boolean column: did the verifier keep the example")] = "kept",
    correct: Annotated[str, typer.Option(help="boolean column: is the synthetic label correct")] = "correct",
    label: Annotated[Optional[str], typer.Option(help="column of synthetic labels (with --truth, instead of --correct)")] = None,
    truth: Annotated[Optional[str], typer.Option(help="column of true labels (with --label)")] = None,
    level: Annotated[float, typer.Option(help="confidence level")] = 0.95,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
):
    """How good is a verifier? φ, ψ, the breakdown point p* and the generator's error p (Feng et al. 2024)."""
    import json

    from .verifiers import verifier_quality_from_csv

    try:
        if not 0 < level < 1:
            raise ConfigError(f"--level must be a number in (0, 1); got {level}")
        quality = verifier_quality_from_csv(csv, kept=kept, correct=correct, label=label, truth=truth, level=level)
    except ConfigError as error:
        _fail(error)
    if json_out:
        print(json.dumps(quality.to_dict(), indent=2))
        return
    table = Table(title=f"verifier quality — {csv} ({quality.n} audited examples)", caption=f"intervals: {quality.level:.0%} (Wilson; p* from the joint φ, ψ intervals)")
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column("interval", justify="right")
    rows = [
        ("generator error p = P(label wrong)", quality.p),
        ("φ = P(keep | correct)", quality.phi),
        ("ψ = P(keep | wrong)", quality.psi),
        ("kept fraction", quality.kept_fraction),
        ("breakdown point p* = φ/(φ+ψ)", quality.p_star),
    ]
    for name, value in rows:
        table.add_row(name, f"{value.estimate:.4g}", f"[{value.lower:.4g}, {value.upper:.4g}]")
    table.add_row("error of the kept data p′", f"{quality.pruned_error:.4g}", "")
    console.print(table)
    console.print(quality.verdict)


@app.command("sweep")
def sweep_command(
    preset: Annotated[str, typer.Argument(help="preset name (see `synthloop list`) or TOML file")],
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="a swept key and its values, e.g. --grid task.d=10,20,40 (repeatable; cartesian product)")] = None,
    set_: SetOption = None,
    replicates: Annotated[Optional[int], typer.Option(help="independent repetitions per cell")] = None,
    seed: Annotated[Optional[int], typer.Option(help="experiment seed (the same for every cell)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default: runs/<name>-sweep); finished cells are skipped on re-run")] = None,
    workers: Annotated[Optional[int], typer.Option(help="processes running cells (default: all cores; 1 runs in this process)")] = None,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray (RAY_ADDRESS, else a local Ray instance)")] = "local",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
):
    """Run an experiment over a grid of parameters: one run directory per cell, and an index."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .executors import make_executor
    from .sweep import format_value, plan_sweep, run_sweep

    try:
        planned = plan_sweep(preset, grid or [], set_ or [], replicates, seed)
        out = out or Path("runs") / f"{planned.name}-sweep"
        executor = make_executor(workers, executor)
        counts = {"running": 0, "failed": 0}
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("cells"),
            TextColumn("{task.fields[running]} running, {task.fields[failed]} failed"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet, transient=True,
        ) as progress:
            bar = progress.add_task(f"{planned.name} sweep ({executor.workers} workers)", total=len(planned.cells), running=0, failed=0)

            def on_event(kind: str, cell, result) -> None:
                if kind == "started":
                    counts["running"] += 1
                elif kind == "done":
                    counts["running"] -= 1
                    counts["failed"] += result["status"] == "failed"
                progress.update(bar, advance=0 if kind == "started" else 1, **counts)

            index = run_sweep(planned, out, executor, on_event)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — finished cells and generations are saved; run the same command to resume ({out})")
        raise typer.Exit(130)
    finals = [c for c in index.columns if c.startswith("final.")]
    if not quiet:
        metric = planned.base.report.metric or planned.base.build_task().primary_metric
        table = Table(title=f"{planned.name} sweep: final {metric} (mean over {planned.base.replicates} replicates)")
        table.add_column("cell", style="dim")
        for key in planned.grid:
            table.add_column(key, justify="right")
        table.add_column("status")
        table.add_column("wall s", justify="right")
        for column in finals:
            table.add_column(column[len("final."):], justify="right")
        for _, row in index.iterrows():
            style = {"finished": "green", "failed": "red"}.get(row["status"], "yellow")
            table.add_row(
                row["cell"], *(format_value(row[k]) for k in planned.grid), f"[{style}]{row['status']}[/]",
                "" if row["wall_s"] != row["wall_s"] else f"{row['wall_s']:.2f}",
                *("" if row[c] != row[c] else f"{row[c]:.4g}" for c in finals),
            )
        console.print(table)
    failed = index[index["status"] == "failed"]
    for _, row in failed.iterrows():
        err_console.print(f"[bold red]failed:[/] {row['cell']}: {row['error']}", highlight=False)
    console.print(f"sweep directory: [bold]{out}[/] (index.parquet, cells/<cell>/)")
    if len(failed):
        err_console.print(f"{len(failed)} of {len(index)} cells failed; fix the cause and run the same command to retry them", highlight=False)
        raise typer.Exit(1)


@app.command("runs")
def runs_command(root: Annotated[Path, typer.Argument(help="folder to search for run directories and sweeps")] = Path("runs")):
    """List the run directories and sweeps under a folder, with their status and final metric."""
    from .sweep import find_runs

    found = find_runs(root)
    if not found:
        console.print(f"no run directories under {root}")
        return
    table = Table(title=f"runs under {root}")
    for name, justify in [("path", "left"), ("name", "left"), ("task", "left"), ("params", "left"), ("workflows", "left"), ("status", "left"), ("final", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for info in found:
        style = {"finished": "green", "failed": "red"}.get(info.status, "yellow")
        if info.kind == "sweep":
            status = f"[{style}]{info.status}[/] ({info.cells_finished}/{info.cells} cells" + (f", {info.cells_failed} failed)" if info.cells_failed else ")")
            final = "see index.parquet"
        else:
            status = f"[{style}]{info.status}[/]"
            final = (f"{info.metric}: " if info.metric else "") + ", ".join(f"{k}={v:.4g}" for k, v in info.finals.items() if v is not None)
        try:
            shown = info.path.relative_to(root)
        except ValueError:
            shown = info.path
        table.add_row(str(shown) + ("/ (sweep)" if info.kind == "sweep" else ""), info.name, info.task, info.params, ", ".join(info.workflows), status, final)
    console.print(table)



@app.command("edit")
def edit_command(
    config: Annotated[Optional[Path], typer.Argument(help="TOML file of EditExperiment keys (default: the defaults)")] = None,
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<name>); resumed if interrupted")] = None,
    overwrite: Annotated[bool, typer.Option(help="discard an existing run directory of a different experiment")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or table")] = False,
):
    """Remove toxicity from a language model by toxic-subspace projection (DeTox); toxicity and perplexity before/after."""
    import pandas as pd

    from .detox import EditExperiment, results_table, run_edit_experiment

    try:
        experiment = EditExperiment.load(config, set_ or [])
        out = out or Path("runs") / experiment.name
        with err_console.status("starting", spinner="dots") if not quiet else _nullcontext() as status:
            def on_step(text: str) -> None:
                if status is not None:
                    status.update(text)

            run_edit_experiment(experiment, out, overwrite=overwrite, on_step=on_step)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — finished conditions are saved; run the same command to resume ({out})")
        raise typer.Exit(130)
    if not quiet:
        table = results_table(pd.read_parquet(out / "metrics.parquet")).drop(columns=["toxicity_steered_prob", "toxicity_plain_prob", "edit_seconds"], errors="ignore")
        view = Table(title=f"{experiment.name}: toxic-subspace projection of {experiment.model}",
                     caption=f"{experiment.eval_prompts} held-out prompts × {experiment.max_new_tokens} new tokens; perplexity on {experiment.held_out_texts} held-out sentences of {experiment.corpus}")
        for column in table.columns:
            view.add_column(column, justify="left" if column in ("condition", "layers") else "right")
        for _, row in table.iterrows():
            view.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(view)
    console.print(f"run directory: [bold]{out}[/] (figure.png, metrics.parquet, pairs.jsonl, directions.csv)")


def _nullcontext():
    from contextlib import nullcontext

    return nullcontext()

def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    sys.exit(main())
