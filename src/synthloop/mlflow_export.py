"""Export run directories to MLflow, for users who keep their runs in its tracking UI.

The run directory stays the source of truth: the export writes one MLflow run per (run
directory, workflow) with the flattened config as params and, per metric, the mean over
replicates at each generation as the metric's ``step``. Exporting the same directory again
replaces its MLflow runs (found by the ``synthloop.key`` tag) instead of duplicating them.
Needs the ``mlflow`` package (``pip install 'synthloop[mlflow]'``); MLflow's telemetry is
turned off unless the user set ``MLFLOW_DISABLE_TELEMETRY`` themselves.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import compare
from .validation import ConfigError

log = logging.getLogger(__name__)

#: MLflow's limits per ``log_batch`` call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000


def require():
    """Import mlflow (telemetry off) or raise one ConfigError saying how to install it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("--mlflow needs the mlflow package: pip install mlflow (or the synthloop extra 'mlflow')") from None
    return mlflow, MlflowClient


@dataclass
class Exported:
    """One MLflow run written by :func:`export`."""

    run: str
    workflow: str
    experiment: str
    run_id: str
    metrics: int
    params: int


def export(paths: list[str | Path] | compare.Comparison, uri: str, experiment: str | None = None) -> list[Exported]:
    """Log every (run, workflow) of ``paths`` (run or sweep directories) to the MLflow store at ``uri``.

    Parameters
    ----------
    paths : list of paths, or a Comparison already loaded
    uri : str
        MLflow tracking URI: ``sqlite:///mlflow.db``, ``http://host:5000``, ``file:///…``.
    experiment : str, optional
        MLflow experiment; default: each run's experiment name (its preset's name).

    Returns
    -------
    list of Exported
    """
    _, MlflowClient = require()
    from mlflow.entities import Metric, Param, RunTag

    comparison = paths if isinstance(paths, compare.Comparison) else compare.load_runs(list(paths))
    try:
        client = MlflowClient(tracking_uri=uri)
    except Exception as error:  # noqa: BLE001 — any store failure is one line naming the URI
        raise ConfigError(f"--mlflow {uri}: {type(error).__name__}: {error}".splitlines()[0]) from None
    experiment_ids: dict[str, str] = {}
    means = (
        comparison.metrics.groupby(["run", "workflow", "metric", "generation"], sort=False, observed=True)["value"].mean().reset_index()
    )
    out = []
    for row in comparison.runs.to_dict("records"):
        name = experiment or str(row.get("name") or "synthloop")
        try:
            if name not in experiment_ids:
                found = client.get_experiment_by_name(name)
                experiment_ids[name] = found.experiment_id if found is not None else client.create_experiment(name)
            key = f"{Path(row['path']).resolve()}::{row['workflow']}"
            for old in client.search_runs([experiment_ids[name]], filter_string=f"tags.`synthloop.key` = '{_quote(key)}'"):
                client.delete_run(old.info.run_id)
            tags = {"synthloop.key": key, "synthloop.run_dir": str(Path(row["path"]).resolve()), "synthloop.workflow": row["workflow"], "synthloop.status": row["status"]}
            created = client.create_run(experiment_ids[name], run_name=f"{row['run']} · {row['workflow']}", tags=tags)
            run_id = created.info.run_id
            params = [Param(k, _param(row[k])) for k in comparison.params if k in row and _param(row[k]) != ""]
            now = int(time.time() * 1000)
            rows = means[(means["run"] == row["run"]) & (means["workflow"] == row["workflow"])]
            metrics = [
                Metric(metric, float(value), now, int(generation))
                for metric, generation, value in rows[["metric", "generation", "value"]].itertuples(index=False)
                if np.isfinite(value)
            ]
            for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
                client.log_batch(run_id, params=params[start:start + MAX_PARAMS_PER_BATCH])
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
            client.log_batch(run_id, tags=[RunTag("synthloop.replicates", str(row.get("replicates", "")))])
            client.set_terminated(run_id, "FINISHED" if row["status"] == "finished" else "KILLED")
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 — the tracking store's errors, one line
            raise ConfigError(f"--mlflow {uri}: {type(error).__name__}: {error}".splitlines()[0]) from None
        log.info("exported %s (%s) to MLflow run %s", row["run"], row["workflow"], run_id)
        out.append(Exported(row["run"], row["workflow"], name, run_id, len(metrics), len(params)))
    return out


def _param(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)[:MAX_PARAM_LENGTH]


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
