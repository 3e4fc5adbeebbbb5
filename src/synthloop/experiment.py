"""Experiment configuration: a pydantic model, TOML presets, ``--set`` overrides, clear errors.

An experiment is plain data — task parameters, workflows, number of generations, replicates
and seed. Presets are TOML files shipped in ``synthloop/presets`` that hold only what differs
from the defaults; any TOML file works the same way. Overrides use dotted keys
(``task.d=32``, ``workflows[2].budget=50``) with TOML values (``task.sigma=0.5``,
``workflows=["replace","accumulate"]``; a bare word is a string). Everything is validated
here, once, before any work starts; every problem is one line naming the key.

Every TOML file synthloop writes (a run's ``config.toml``, ``synthloop config``) starts with
``synthloop_format``, the version of this layout; a file of a newer format is refused rather
than misread, and a file without the key is format 1.
"""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tomli_w
from pydantic import (
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .tasks import TASKS, Task, TaskConfig, resolve_task
from .validation import ConfigError, Integer, Real, StrictModel, validate
from .verifiers import VERIFIERS, VerifierConfig
from .workflows import WORKFLOWS, WorkflowConfig


class ReportConfig(StrictModel):
    """How the run's figure is drawn."""

    metric: str | None = Field(default=None, description="metric to plot; default: the task's primary metric")
    scale: Literal["both", "linear", "log"] = Field(default="both", description="y axis: linear and log panels, or one")


#: Version of the config layout written by ``Experiment.to_toml``; raise it when a file written
#: now would be misread by an older synthloop.
FORMAT_VERSION = 1
FORMAT_KEY = "synthloop_format"


def check_format(data: dict, origin: str) -> dict:
    """``data`` without its format key; a ConfigError if a newer synthloop wrote it."""
    if not isinstance(data, dict) or FORMAT_KEY not in data:
        return data
    data = dict(data)
    version = data.pop(FORMAT_KEY)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{origin}: {FORMAT_KEY} must be a positive integer; got {version!r}")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{origin} was written by a newer synthloop ({FORMAT_KEY} = {version}; this version reads up to "
            f"{FORMAT_VERSION}); upgrade synthloop (pip install -U synthloop) to use it"
        )
    return data


class GuardConfig(StrictModel):
    """Stop a workflow when the replicate mean of ``metric`` leaves a range.

    ``max_ratio = k`` stops it once the mean exceeds k × its generation-0 mean; ``max`` and
    ``min`` are absolute limits. The generation that trips a guard is kept; the reason is
    recorded in the run.
    """

    metric: str = Field(description="a metric of the task (see its metric_labels)")
    max_ratio: Real(0, None, lo_open=True) | None = Field(default=None, description="stop when mean > max_ratio × generation 0's mean")
    max: Real() | None = Field(default=None, description="stop when mean > max")
    min: Real() | None = Field(default=None, description="stop when mean < min")

    @model_validator(mode="after")
    def _some_limit(self):
        if self.max_ratio is None and self.max is None and self.min is None:
            raise ValueError("needs at least one of max_ratio, max, min")
        return self

    def check(self, metrics: dict, baseline: dict) -> str | None:
        """Why this guard stops the workflow at ``metrics`` (generation 0's in ``baseline``), or None."""
        if self.metric not in metrics:
            raise ConfigError(f"guard metric {self.metric!r} is not a metric of this run; metrics: {sorted(metrics)}")
        mean = float(np.nanmean(metrics[self.metric])) if np.isfinite(metrics[self.metric]).any() else float("nan")
        first = float(np.nanmean(baseline[self.metric])) if np.isfinite(baseline[self.metric]).any() else float("nan")
        if self.max_ratio is not None and mean > self.max_ratio * first:
            return f"mean {self.metric} {mean:.4g} > {self.max_ratio:g} × generation 0's {first:.4g}"
        if self.max is not None and mean > self.max:
            return f"mean {self.metric} {mean:.4g} > max {self.max:g}"
        if self.min is not None and mean < self.min:
            return f"mean {self.metric} {mean:.4g} < min {self.min:g}"
        return None


def _default_workflows() -> list[dict]:
    return [{"name": "replace"}, {"name": "accumulate"}, {"name": "accumulate-subsample"}]


class Experiment(StrictModel):
    """A complete, validated experiment: what :func:`synthloop.run` executes."""

    name: str = "experiment"
    description: str = ""
    task: SerializeAsAny[TaskConfig] = Field(default_factory=lambda: {"name": "regression"}, validate_default=True)
    workflows: list[WorkflowConfig] = Field(default_factory=_default_workflows, validate_default=True, min_length=1)
    verifier: VerifierConfig | None = Field(default=None, description="filters each generation's synthetic rows; none by default")
    generations: Integer(0, 10_000) = Field(default=50, description="generations after generation 0; 0 fits generation 0 only (a model later runs load)")
    replicates: Integer(1, 1_000_000) = 100
    seed: Integer(0, 2**63 - 1) = 0
    report: ReportConfig = Field(default_factory=ReportConfig)
    guard: list[GuardConfig] | None = Field(default=None, description="stopping rules, [[guard]] tables; none by default")

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any, info: ValidationInfo):
        if isinstance(value, TaskConfig):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"task must be a table with a name; got {value!r}")
        base_dir = (info.context or {}).get("base_dir")
        name = value.get("name", "regression")
        task_cls = resolve_task(name, base_dir)
        if name not in TASKS:
            # A user task file is recorded by absolute path, so the resolved config reloads anywhere.
            file, cls_name = name.rsplit(":", 1)
            path = Path(file).expanduser()
            name = f"{(path if path.is_absolute() else Path(base_dir or Path.cwd()) / path).resolve()}:{cls_name}"
        return validate(task_cls.Config, {**value, "name": name}, prefix="task", context=info.context)

    @field_validator("workflows", mode="before")
    @classmethod
    def _workflow_shorthand(cls, value: Any):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self):
        keys = [w.key for w in self.workflows]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise ValueError(f"workflows[{i}] repeats the workflow {key!r}; give it a distinct label")
        task = self.build_task()
        capacity = task.synthetic_capacity()
        kept_size = task.synthetic_size
        if self.verifier is not None:
            problem = task.verification_problem()
            if problem:
                raise ValueError(f"verifier cannot filter this task: {problem}")
            if self.verifier.needs_truth and not task.knows_truth:
                raise ValueError(
                    f"verifier.name {self.verifier.name!r} needs the truth of synthetic rows, which task "
                    f"{self.task.name!r} does not define; use verifier.name='random'"
                )
            if self.verifier.needs_judge and not task.has_judge:
                raise ValueError(f"verifier.name 'model' needs a judge model, which task {self.task.name!r} does not define")
            if self.verifier.needs_confidence and not task.has_confidence:
                raise ValueError(f"verifier.name 'self' needs the model's confidence, which task {self.task.name!r} does not define")
            if self.verifier.candidates > 1 and not task.has_candidates:
                raise ValueError(f"verifier.selection 'best-of-k' needs several candidate labels per input, which task {self.task.name!r} does not synthesize")
            kept_size = self.verifier.kept_size(task.synthetic_size)
        for i, workflow in enumerate(self.workflows):
            problem = workflow.size_problem(task.real_size, kept_size)
            if problem:
                raise ValueError(f"workflows[{i}].{problem}")
            if capacity is not None:
                largest = max(workflow.synthetic_size(g, task.synthetic_size) for g in (1, self.generations))
                if largest > capacity[0]:
                    raise ValueError(
                        f"workflows[{i}] ({workflow.key!r}) synthesizes up to {largest} rows per generation, "
                        f"but {capacity[1]}"
                    )
        if self.report.metric is not None and task.metric_labels and self.report.metric not in task.metric_labels:
            raise ValueError(f"report.metric must be one of {sorted(task.metric_labels)}; got {self.report.metric!r}")
        known = set(task.metric_labels)
        if self.verifier is not None and task.knows_truth:
            known |= {"verifier_p", "verifier_phi", "verifier_psi", "verifier_p_star", "verifier_kept_error"}
        for i, guard in enumerate(self.guard or ()):
            if task.metric_labels and guard.metric not in known:
                raise ValueError(f"guard[{i}].metric must be one of {sorted(known)}; got {guard.metric!r}")
        return self

    def build_task(self) -> Task:
        return resolve_task(self.task.name)(self.task)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)

    def to_toml(self) -> str:
        return tomli_w.dumps({FORMAT_KEY: FORMAT_VERSION, **self.to_dict()})

    @classmethod
    def from_dict(cls, data: dict, base_dir: Path | None = None) -> "Experiment":
        """Validate ``data`` (as read from TOML) with user task files resolved against ``base_dir``."""
        if not isinstance(data, dict):
            raise ConfigError(f"an experiment must be a table; got {type(data).__name__}")
        data = check_format(data, "this config")
        return validate(cls, data, context={"base_dir": base_dir}, tags=frozenset(WORKFLOWS) | frozenset(VERIFIERS))

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "Experiment":
        """A new experiment with dotted-key overrides applied and everything re-validated."""
        data = apply_overrides(self.to_dict(), overrides)
        return Experiment.from_dict(data)


def list_presets() -> dict[str, str]:
    """Shipped presets: name -> one-line description."""
    out = {}
    for item in sorted(resources.files("synthloop.presets").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            data = tomllib.loads(item.read_text())
            out[item.name[: -len(".toml")]] = data.get("description", "")
    return out


def read_toml(name_or_path: str | Path) -> tuple[dict, Path | None]:
    """The TOML table of a preset name or a file path, and the directory user task files are relative to."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            text, origin, base_dir = path.read_text(), str(path), path.resolve().parent
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
            raise ConfigError(f"{path}: cannot read it ({reason})") from None
    else:
        resource = resources.files("synthloop.presets") / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ConfigError(f"{name_or_path!r} is neither a preset nor a file; presets: {', '.join(list_presets())}")
        text, origin, base_dir = resource.read_text(), f"preset {name_or_path}", None
    try:
        return check_format(tomllib.loads(text), origin), base_dir
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{origin}: invalid TOML: {error}") from None


def load_experiment(name_or_path: str | Path, overrides: list[str] | dict[str, Any] = ()) -> Experiment:
    """Build an experiment from a preset name or TOML file plus ``key=value`` overrides."""
    data, base_dir = read_toml(name_or_path)
    data.setdefault("name", Path(str(name_or_path)).stem)
    experiment = Experiment.from_dict(data, base_dir)
    # Overrides apply to the fully resolved config, so they can reach defaulted keys too.
    return experiment.with_overrides(overrides) if overrides else experiment


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key(key: str) -> list[str | int]:
    """``"workflows[2].budget"`` -> ``["workflows", 2, "budget"]``; a ConfigError if malformed."""
    parts = [name if name else int(index) for name, index in _PART.findall(key)]
    if not parts or "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") != key:
        raise ConfigError(f"--set key {key!r} is not a dotted key like task.d or workflows[2].budget")
    return parts


def parse_value(text: str) -> Any:
    """A TOML value (``3``, ``0.5``, ``true``, ``["a", "b"]``), or the text itself as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """``data`` with each ``key=value`` (or ``{key: value}``) applied at its dotted key."""
    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set expects key=value; got {item!r}")
            parsed.append((key.strip(), parse_value(text.strip())))
        items = parsed
    for key, value in items:
        parts = parse_key(key)
        node = data
        for i, part in enumerate(parts[:-1]):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[: i + 1]).lstrip(".")
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(f"{where} does not exist (--set {key})")
                if isinstance(node[part], str):
                    node[part] = {"name": node[part]}
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise ConfigError(f"{where} is not a table (--set {key})")
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError(f"{key} does not exist (--set {key})")
        elif not isinstance(node, dict):
            raise ConfigError(f"{key} is not inside a table (--set {key})")
        node[last] = value
    return data
