"""Command line: a thin layer over the Python API (``synthloop.run``, ``synthloop.load``)."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from .validation import ConfigError


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


class _UserErrors(TyperGroup):
    """Every command: a user mistake (ConfigError, an unreadable or unwritable file) is one
    error line and exit status 2; ``--debug`` shows its traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, OSError) as error:
            if (ctx.obj or {}).get("debug"):
                raise
            for line in _one_line(error).splitlines():
                err_console.print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_UserErrors, add_completion=False, no_args_is_help=True, help="Run, predict and explain generate → verify → retrain loops.")
console = Console()
if not console.is_terminal:
    console = Console(width=160)  # tables piped to a file or CI log keep their columns
err_console = Console(stderr=True)
if not err_console.is_terminal:
    err_console = Console(stderr=True, width=200)  # one-line errors stay on one line in logs

SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key, e.g. --set task.d=32 (repeatable)")]
MlflowOption = Annotated[Optional[str], typer.Option("--mlflow", help="also log the results to this MLflow tracking URI, e.g. sqlite:///mlflow.db (needs synthloop[mlflow])")]


@app.callback()
def _options(ctx: typer.Context, debug: Annotated[bool, typer.Option("--debug", help="show the traceback of errors")] = False):
    ctx.obj = {"debug": debug}


def _fail(error: Exception) -> None:
    raise error  # printed as one line (or a traceback with --debug) by _UserErrors


@app.command("run")
def run_command(
    preset: Annotated[str, typer.Argument(help="preset name (see `synthloop list`) or TOML file")],
    set_: SetOption = None,
    replicates: Annotated[Optional[int], typer.Option(help="independent repetitions")] = None,
    seed: Annotated[Optional[int], typer.Option(help="experiment seed")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<name>); resumed if interrupted")] = None,
    overwrite: Annotated[bool, typer.Option(help="discard an existing run directory of a different experiment")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    mlflow: MlflowOption = None,
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

    experiment = None
    try:
        if mlflow is not None:
            _require_mlflow()
        experiment = load_experiment(preset, set_ or [])
        extra = {k: v for k, v in {"replicates": replicates, "seed": seed}.items() if v is not None}
        if extra:
            experiment = experiment.with_overrides(extra)
        out = out or Path("runs") / experiment.name
        total = len(experiment.workflows) * (experiment.generations + 1)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
            TimeRemainingColumn(), console=err_console, disable=quiet, transient=True,
        ) as progress:
            bar = progress.add_task(f"{experiment.name} ({experiment.replicates} replicates)", total=total, unit="generations × workflows")

            def advance(workflow: str, record) -> None:
                progress.update(bar, advance=1, description=f"{experiment.name}: {workflow} g={record.generation}")

            with training_progress(progress):
                result = api.run(experiment, out=out, overwrite=overwrite, on_generation=advance)
        if mlflow is not None:
            _export_mlflow([result.path], mlflow)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        where = _saved_so_far(experiment, out) if experiment is not None and out is not None else "before it started"
        err_console.print(f"interrupted {where}; run the same command to resume ({out})", highlight=False)
        raise typer.Exit(130)
    for workflow, stop in result.stopped.items():
        where = f"after generation {stop['generation']}" if stop["generation"] >= 0 else "at generation 0, keeping none"
        err_console.print(f"[bold yellow]{workflow} stopped {where}:[/] {stop['reason']}", highlight=False)
    if not quiet:
        console.print(result.table())
        console.print(result.caption(), style="dim", highlight=False)
    console.print(f"run directory: [bold]{result.path}[/] (figure.png, metrics.parquet, summary.json)")


@contextmanager
def training_progress(progress):
    """A second bar on ``progress`` that follows the neural trainer's logged steps (loss,
    tokens/s); it appears only when a task trains a network."""
    from rich.progress import TaskID

    bar: list[TaskID] = []

    class Bar(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            info = getattr(record, "progress", None)
            if info is None:
                return
            step, steps, loss, rate = info
            if not bar:
                bar.append(progress.add_task("training", total=steps, unit="steps"))
            description = f"training: loss {loss:.4f}, {rate:,.0f} tokens/s"
            progress.update(bar[0], completed=step, total=steps, description=description)

    logger = logging.getLogger("synthloop.nn.trainer")
    handler, level, propagate = Bar(), logger.level, logger.propagate
    # INFO records reach the bar only; the root handler keeps showing warnings alone.
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _saved_so_far(experiment, out: Path) -> str:
    """Where an interrupted run stands on disk, e.g. "after generation 7 of accumulate"."""
    from .store import RunStore

    try:
        store = RunStore(out)
        saved = {w.key: store.checkpoint(w.key, experiment).records() for w in experiment.workflows}
    except (ConfigError, OSError):
        return "with its finished generations saved"
    started = [(key, records[-1].generation) for key, records in saved.items() if records]
    if not started:
        return "before the first generation finished"
    key, generation = started[-1]  # workflows run one after another
    return f"after generation {generation} of {key}"


@app.command("list")
def list_command():
    """List the shipped presets and sweep files, one line each."""
    from .experiment import list_presets
    from .sweep import list_sweep_files

    table = Table(show_header=True, box=None)
    table.add_column("preset", style="bold")
    table.add_column("what it runs")
    for name, description in list_presets().items():
        table.add_row(name, description)
    for name, description in list_sweep_files().items():
        table.add_row(name, f"(sweep file: synthloop sweep {name}) {description}")
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
    dirs: Annotated[list[Path], typer.Argument(help="run directories, sweep directories (every cell) or folders of runs")],
    metric: Annotated[Optional[list[str]], typer.Option(help="metric to draw (repeatable; default: the runs' reported metric)")] = None,
    scale: Annotated[Optional[str], typer.Option(help="y axis: both, linear or log for one run; auto, linear or log across runs")] = None,
    facet: Annotated[Optional[str], typer.Option(help="parameter whose values split panels, e.g. task.d (default: a varying task parameter; 'none' for one panel)")] = None,
    hue: Annotated[Optional[str], typer.Option(help="parameter whose values colour the curves (default: workflow)")] = None,
    figure: Annotated[Optional[Path], typer.Option(help="where the comparison figure goes (default: report.png in the sweep directory, else here)")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="also write one self-contained HTML report to this file")] = None,
    mlflow: Annotated[Optional[str], typer.Option("--mlflow", help="also log every run to this MLflow tracking URI, e.g. sqlite:///mlflow.db")] = None,
    table: Annotated[Optional[str], typer.Option("--table", help="also print a paper's table of these runs: feng-eigen (Feng et al. Tables 2 and 4)")] = None,
):
    """Redraw a run's figure and print its table; with several runs or a sweep, compare them."""
    import matplotlib.pyplot as plt

    from . import api, compare
    from .store import RunStore

    single = len(dirs) == 1 and (dirs[0] / "config.toml").is_file() and facet is None and hue is None
    try:
        if mlflow is not None:
            _require_mlflow()
        if table not in (None, "feng-eigen"):
            raise ConfigError(f"--table must be 'feng-eigen'; got {table!r}")
        if len(metric or []) > 1 and single:
            raise ConfigError("--metric is given more than once; one run's figure draws one metric")
        if single:
            result = api.load(dirs[0])
            chosen = metric[0] if metric else None
            known = sorted(set(result.metrics["metric"]))
            if chosen is not None and chosen not in known:
                raise ConfigError(f"--metric must be one of {known}; got {chosen!r}")
            if scale not in (None, "both", "linear", "log"):
                raise ConfigError(f"--scale must be one of 'both', 'linear', 'log'; got {scale!r}")
            fig = result.figure(metric=chosen, scale=scale)
            RunStore(dirs[0]).write_figure(fig)
            plt.close(fig)
            result.write_sample_figure()
            result.write_extra_figures()
            comparison = compare.load_runs(dirs) if html or mlflow or table else None
        else:
            if scale not in (None, "auto", "linear", "log"):
                raise ConfigError(f"--scale must be one of 'auto', 'linear', 'log' across runs; got {scale!r}")
            comparison = compare.load_runs(dirs)
            facet_, hue_, style = _layout(comparison, facet, hue)
            known = sorted(set(comparison.metrics["metric"]))
            for name in metric or []:
                if name not in known:
                    raise ConfigError(f"--metric must be one of {known}; got {name!r}")
            chosen = (metric or comparison.primary_metrics)[0]
            fig = compare.figure(
                comparison.metrics, comparison.theory, metric=chosen, facet=facet_, hue=hue_, style=style,
                ylabel=comparison.labels.get(chosen, chosen), scale=scale or "auto",
                title=f"{', '.join(_unique(comparison.runs['name']))}: {comparison.runs['run'].nunique()} runs",
            )
            if figure is None:
                sweeps = [d for d in dirs if (d / "sweep.toml").is_file()]
                figure = sweeps[0] / "report.png" if len(dirs) == 1 and sweeps else Path("report.png")
            _save_figure(fig, figure)
            plt.close(fig)
        sections = []
        if table is not None:
            from . import eigen_tables

            paper, caption = eigen_tables.report(comparison)
            sections.append(("Feng et al. eigenvalue table", eigen_tables.html_table(paper, caption)))
        if html is not None:
            from . import htmlreport

            facet_, hue_, _ = _layout(comparison, facet, hue)
            text = htmlreport.render(comparison, metrics=metric or None, facet=facet_, hue=hue_, scale=scale if scale in ("linear", "log") else "auto", sections=sections)
            _write_text(html, text)
        if mlflow is not None:
            _export_mlflow(comparison, mlflow)
    except ConfigError as error:
        _fail(error)
    if single:
        console.print(result.table(chosen))
        console.print(result.caption(), style="dim", highlight=False)
        console.print(f"{result.status} run; figure redrawn: [bold]{dirs[0] / 'figure.png'}[/]")
    else:
        console.print(_final_table(comparison, chosen))
        console.print(f"figure: [bold]{figure}[/]")
    if table is not None:
        console.print(eigen_tables.rich_table(paper, title="Feng et al. eigenvalue table: accuracy (%) at tolerance τ", caption=caption))
    if html is not None:
        console.print(f"HTML report: [bold]{html}[/] (self-contained; open it in any browser)")


def _require_mlflow() -> None:
    """Fail before any work when --mlflow is given without mlflow installed."""
    from .mlflow_export import require

    require()


def _export_mlflow(runs, uri: str) -> None:
    from .mlflow_export import export

    exported = export(runs, uri)
    console.print(f"MLflow: {len(exported)} runs (one per run directory and workflow) logged to {uri}")


def _unique(values) -> list[str]:
    return [str(v) for v in dict.fromkeys(values)]


def _layout(comparison, facet: str | None, hue: str | None):
    """(facet, hue, style) from the options; 'none' turns a facet or hue off."""
    from .compare import default_layout

    known = {"workflow", *comparison.params}
    for option, value in (("--facet", facet), ("--hue", hue)):
        if value not in (None, "none") and value not in known:
            raise ConfigError(f"{option} must be a config key of these runs or 'workflow'; got {value!r} (varying: {', '.join(comparison.varying()) or 'nothing'})")
    # An empty string is "chosen, and off": default_layout fills only keys left as None.
    facet_, hue_, style = default_layout(comparison.varying(), "" if facet == "none" else facet, "" if hue == "none" else hue)
    return facet_ or None, hue_ or None, style


def _save_figure(fig, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as error:
        raise ConfigError(f"cannot write the figure {path}: {error.strerror or error}") from None


def _write_text(path: Path, text: str) -> None:
    from .store import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None


def _final_table(comparison, metric: str) -> Table:
    from .compare import finals

    varying = [k for k in comparison.varying() if k != "workflow"]
    rows = comparison.runs.drop(columns=[c for c in comparison.runs if c.startswith("final_")])
    rows = rows.merge(finals(comparison.metrics, comparison.theory, metric), on=["run", "workflow"], how="inner")
    table = Table(title=f"final {comparison.labels.get(metric, metric)} (mean ± 95% CI over replicates)")
    for name in ["run", "workflow", *varying, "status", "generation", "measured", "theory"]:
        table.add_column(name, justify="right" if name in ("generation", "measured", "theory") else "left", overflow="fold")
    for _, row in rows.iterrows():
        style = {"finished": "green", "failed": "red"}.get(row["status"], "yellow")
        status = f"[{style}]{row['status']}[/]" + (f" ({row['stop_reason']})" if row["stop_reason"] else "")
        ci = "" if row["final_ci95"] != row["final_ci95"] else f" ± {row['final_ci95']:.2g}"
        theory = "—" if row["final_theory"] != row["final_theory"] else f"{row['final_theory']:.4g}"
        table.add_row(str(row["run"]), str(row["workflow"]), *(_cell(row[k]) for k in varying), status, _cell(row["final_generation"]), f"{row['final_mean']:.4g}{ci}", theory)
    return table


def _cell(value) -> str:
    if value is None or value != value:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


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
    theta_gen: Annotated[Optional[float], typer.Option(help="verification: generator angle to w* (radians)")] = None,
    theta_prune: Annotated[Optional[float], typer.Option(help="verification: pruner angle to w* (radians)")] = None,
    theta: Annotated[Optional[float], typer.Option(help="verification: angle between generator and pruner (default |θ_gen − θ_prune|)")] = None,
    tau: Annotated[float, typer.Option(help="verification: class mean τ of the mixture x | y ~ N(yτw*, I/d)")] = 0.15,
    p: Annotated[Optional[float], typer.Option("--p", help="verification: generator error p (with --phi, --psi instead of angles)")] = None,
    phi: Annotated[Optional[float], typer.Option(help="verification: P(keep | correct)")] = None,
    psi: Annotated[Optional[float], typer.Option(help="verification: P(keep | wrong)")] = None,
):
    """Print a theory curve as a table, e.g. `synthloop theory regression --d 10 --T 100 --workflow replace`;
    `synthloop theory verification --theta-gen 0.8 --theta-prune 0.3` prints φ, ψ, p* and the verdict."""
    from . import api
    from .experiment import Experiment

    verification_options = {"--theta-gen": theta_gen, "--theta-prune": theta_prune, "--theta": theta, "--p": p, "--phi": phi, "--psi": psi}
    if task == "verification":
        _theory_verification(theta_gen, theta_prune, theta, tau, 100 if d is None else d, p, phi, psi)
        return
    given = [name for name, value in verification_options.items() if value is not None]
    if given:
        _fail(ConfigError(f"{given[0]} applies to `synthloop theory verification`, not to task {task!r}"))

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


def _theory_verification(theta_gen, theta_prune, theta, tau, d, p, phi, psi) -> None:
    """φ, ψ, p and p* of a supervised pruner (angles) or a parametrized one (p, φ, ψ), and the verdict."""
    import numpy as np

    from .theory import verification

    try:
        angles = {"--theta-gen": theta_gen, "--theta-prune": theta_prune, "--theta": theta}
        rates = {"--p": p, "--phi": phi, "--psi": psi}
        if any(v is not None for v in angles.values()) == any(v is not None for v in rates.values()):
            raise ConfigError("give either --theta-gen and --theta-prune (a supervised pruner in the mixture) or --p, --phi and --psi")
        for name, value in {**angles, **rates}.items():
            if value is not None and not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite number; got {value}")
        if any(v is not None for v in angles.values()):
            missing = [name for name in ("--theta-gen", "--theta-prune") if angles[name] is None]
            if missing:
                raise ConfigError(f"{missing[0]} is required with the angles of a supervised pruner")
            if not tau > 0 or d < 1:
                raise ConfigError(f"--tau must be > 0 and --d ≥ 1; got tau={tau}, d={d}")
            mu_norm = tau / np.sqrt(1 + tau**2)  # the mixture task's model, in synthloop.theory's parametrization
            try:
                rates_ = verification.supervised_pruner_rates(theta_gen, theta_prune, mu_norm, d, theta)
            except ValueError as error:
                raise ConfigError(str(error)) from None
            p, phi, psi = float(rates_.p), float(rates_.phi), float(rates_.psi)
            model = (f"mixture d={d}, τ={tau:g}: generator at θ_gen={theta_gen:.4g}, pruner at θ_prune={theta_prune:.4g}, "
                     f"θ={abs(theta_gen - theta_prune) if theta is None else theta:.4g} between them; labels sign(xᵀw_gen)")
        else:
            missing = [name for name, value in rates.items() if value is None]
            if missing:
                raise ConfigError(f"{missing[0]} is required with --p, --phi and --psi")
            for name, value in rates.items():
                if not 0 <= value <= 1:
                    raise ConfigError(f"{name} must be a probability in [0, 1]; got {value}")
            model = f"parametrized pruner: generator error p={p:g}, keeps a correct label w.p. φ={phi:g}, a wrong one w.p. ψ={psi:g}"
    except ConfigError as error:
        _fail(error)
    star = float(verification.breakdown_point(phi, psi))
    rows = [("generator error p = P(y′ ≠ y)", p), ("φ = P(keep | correct)", phi), ("ψ = P(keep | wrong)", psi),
            ("kept fraction (1 − p)φ + pψ", float(verification.kept_fraction(p, phi, psi))),
            ("error of the kept data p′", float(verification.pruned_error_rate(p, phi, psi))), ("breakdown point p* = φ/(φ+ψ)", star)]
    table = Table(title="verification theory (Feng et al. 2024)", caption=model)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    regime = float(verification.asymptotic_accuracy(p, phi, psi)) if np.isfinite(star) else float("nan")
    if regime == 1.0:
        console.print("p < p*: training on the curated data is predicted to recover the truth as the data grow, beating the generator (accuracy → 100% in the paper's limit)")
    elif regime == 0.0:
        console.print("p > p*: the curated data are mostly wrong — training on them is predicted to collapse (accuracy → 0% in the paper's limit)")
    else:
        console.print("p = p* (or nothing is kept): the theory makes no prediction")


@app.command("verifier-quality")
def verifier_quality_command(
    csv: Annotated[Path, typer.Argument(help="CSV file: one audited synthetic example per row")],
    true: Annotated[str, typer.Option("--true", help="column of true labels")] = "true",
    generated: Annotated[str, typer.Option(help="column of the generator's labels (compared with --true; any number of classes)")] = "generated",
    kept: Annotated[str, typer.Option(help="boolean column: did the verifier keep the example")] = "kept",
    correct: Annotated[Optional[str], typer.Option(help="boolean column: is the label correct (instead of --true/--generated)")] = None,
    score: Annotated[Optional[str], typer.Option(help="numeric column of verifier scores (with --threshold, instead of --kept)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="keep examples whose --score is at least this")] = None,
    level: Annotated[float, typer.Option(help="confidence level")] = 0.95,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the intervals (0: Wilson intervals)")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
    figure: Annotated[Optional[Path], typer.Option(help="write a figure (PNG/SVG/PDF): kept error p′ against p, with p* and p")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
):
    """How good is a verifier? p, φ, ψ and the breakdown point p* with confidence intervals (Feng et al. 2024)."""
    import json

    from .verifiers import verifier_quality_figure, verifier_quality_from_csv

    try:
        if not 0 < level < 1:
            raise ConfigError(f"--level must be a number in (0, 1); got {level}")
        if not 0 <= bootstrap <= 1_000_000:
            raise ConfigError(f"--bootstrap must be an integer in [0, 1000000]; got {bootstrap}")
        if seed < 0:
            raise ConfigError(f"--seed must be an integer ≥ 0; got {seed}")
        if figure is not None and figure.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ConfigError(f"--figure must end in .png, .svg or .pdf; got {str(figure)!r}")
        quality = verifier_quality_from_csv(csv, true=true, generated=generated, kept=kept, correct=correct, score=score,
                                            threshold=threshold, level=level, bootstrap=bootstrap, seed=seed)
    except ConfigError as error:
        _fail(error)
    if figure is not None:
        import matplotlib.pyplot as plt

        fig = verifier_quality_figure(quality, title=f"verifier quality — {csv.name} ({quality.n} audited, {quality.level:.0%} intervals)")
        figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure, dpi=150)
        plt.close(fig)
    if json_out:
        print(json.dumps(quality.to_dict(), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"verifier quality — {csv} ({quality.n} audited examples)", caption=f"intervals: {quality.level:.0%} ({quality.method})")
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column("interval", justify="right")
    rows = [
        ("generator error p = P(label wrong)", quality.p),
        ("φ = P(keep | correct)", quality.phi),
        ("ψ = P(keep | wrong)", quality.psi),
        ("kept fraction", quality.kept_fraction),
        ("breakdown point p* = φ/(φ+ψ)", quality.p_star),
        ("error of the kept data p′", quality.pruned_error),
        ("margin p* − p", quality.margin),
    ]
    for name, value in rows:
        interval = "" if value.lower != value.lower else f"[{value.lower:.4g}, {value.upper:.4g}]"
        table.add_row(name, f"{value.estimate:.4g}", interval)
    console.print(table)
    console.print(quality.verdict)
    if figure is not None:
        console.print(f"figure: [bold]{figure}[/]")


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
    mlflow: MlflowOption = None,
    cell_figures: Annotated[bool, typer.Option("--cell-figures", help="also draw figure.png in every cell (slow for small cells; `synthloop report DIR` draws across cells)")] = False,
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
    from .sweep import finished_result, format_value, plan_sweep, run_sweep

    planned = None
    try:
        if mlflow is not None:
            _require_mlflow()
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

            index = run_sweep(planned, out, executor, on_event, cell_figures=cell_figures)
        if mlflow is not None and (index["status"] != "pending").any():
            _export_mlflow([out], mlflow)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        cells = planned.cells if planned is not None and out is not None else []
        done = sum(1 for cell in cells if finished_result(cell, Path(out) / "cells" / cell.id) is not None)
        err_console.print(
            f"interrupted with {done} of {len(cells)} cells finished; the others keep their finished generations — "
            f"run the same command to resume ({out})", highlight=False,
        )
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
            style = {"finished": "green", "stopped": "yellow", "failed": "red"}.get(row["status"], "yellow")
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
            final = _sweep_finals(info.path)
        else:
            status = f"[{style}]{info.status}[/]"
            final = (f"{info.metric}: " if info.metric else "") + ", ".join(f"{k}={v:.4g}" for k, v in info.finals.items() if v is not None)
        try:
            shown = info.path.relative_to(root)
        except ValueError:
            shown = info.path
        table.add_row(str(shown) + ("/ (sweep)" if info.kind == "sweep" else ""), info.name, info.task, info.params, ", ".join(info.workflows), status, final)
    console.print(table)


def _sweep_finals(path: Path) -> str:
    """Each workflow's final value as a range over the sweep's finished cells (from index.parquet)."""
    import pandas as pd

    try:
        index = pd.read_parquet(path / "index.parquet")
    except (OSError, ValueError):
        return ""
    parts = []
    for column in (c for c in index.columns if c.startswith("final.")):
        values = index[column].dropna()
        if len(values):
            parts.append(f"{column[len('final.'):]}={values.min():.4g}…{values.max():.4g}")
    return ("range over cells: " + ", ".join(parts)) if parts else ""


def _run_resumable(run, experiment, out: Path, overwrite: bool, quiet: bool) -> None:
    """Run a resumable experiment (edit, edit-noise) with a progress line; one error line on bad input, exit 130 on Ctrl-C."""
    try:
        with err_console.status("starting", spinner="dots") if not quiet else _nullcontext() as status:
            run(experiment, out, overwrite=overwrite, on_step=(lambda text: status.update(text)) if status is not None else None)
    except ConfigError as error:
        _fail(error)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — finished conditions are saved; run the same command to resume ({out})")
        raise typer.Exit(130)


def _print_frame(table, title: str, caption: str, left: tuple[str, ...]) -> None:
    view = Table(title=title, caption=caption)
    for column in table.columns:
        view.add_column(column, justify="left" if column in left else "right")
    for _, row in table.iterrows():
        view.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)


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
    except ConfigError as error:
        _fail(error)
    out = out or Path("runs") / experiment.name
    _run_resumable(run_edit_experiment, experiment, out, overwrite, quiet)
    if not quiet:
        table = results_table(pd.read_parquet(out / "metrics.parquet")).drop(columns=["toxicity_steered_prob", "toxicity_plain_prob", "edit_seconds"], errors="ignore")
        _print_frame(table, f"{experiment.name}: toxic-subspace projection of {experiment.model}",
                     f"{experiment.eval_prompts} held-out prompts × {experiment.max_new_tokens} new tokens; perplexity on {experiment.held_out_texts} held-out sentences of {experiment.corpus}",
                     ("condition", "layers"))
    console.print(f"run directory: [bold]{out}[/] (figure.png, metrics.parquet, pairs.jsonl, directions.csv)")



@app.command("edit-noise")
def edit_noise_command(
    config: Annotated[Optional[Path], typer.Argument(help="TOML file of NoisyLabelsExperiment keys (default: the CPU-scale defaults)")] = None,
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<name>); resumed if interrupted")] = None,
    overwrite: Annotated[bool, typer.Option(help="discard an existing run directory of a different experiment")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or table")] = False,
):
    """Noisy preference labels: the toxic-subspace edit vs DPO on the same, partly flipped, pairs."""
    import pandas as pd

    from .detox_noise import NoisyLabelsExperiment, noise_table, run_noisy_labels

    try:
        experiment = NoisyLabelsExperiment.load(config, set_ or [])
    except ConfigError as error:
        _fail(error)
    out = out or Path("runs") / experiment.name
    _run_resumable(run_noisy_labels, experiment, out, overwrite, quiet)
    if not quiet:
        _print_frame(noise_table(pd.read_parquet(out / "metrics.parquet")),
                     f"{experiment.name}: edit vs DPO under flipped labels, {experiment.model}, {experiment.n_pairs} pairs",
                     f"{experiment.eval_prompts} held-out prompts × {experiment.max_new_tokens} new tokens; perplexity on {experiment.held_out_texts} held-out sentences; seconds = wall time of the method",
                     ("method",))
    console.print(f"run directory: [bold]{out}[/] (figure.png, metrics.parquet, pairs.jsonl)")

def _nullcontext():
    from contextlib import nullcontext

    return nullcontext()

def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:  # before a command's own handler (e.g. while importing): nothing written yet
        err_console.print("interrupted; run the same command to resume", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
