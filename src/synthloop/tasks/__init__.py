"""Tasks: ground truth + model family + evaluation, one module per task.

Built-in tasks are named (``"regression"``); a user's task is named by its file and class,
``"my_task.py:CoinTask"``, the file's path taken relative to the preset that names it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from ..validation import ConfigError
from .base import Task, TaskConfig, Theory, TheoryCurve
from .diffusion import DiffusionTask
from .eigenvalues import EigenvaluesTask
from .gaussian import GaussianTask
from .kde import KDETask
from .logistic import LogisticTask
from .mixture import MixtureTask
from .regression import RegressionTask
from .self_improve import SelfImproveTask
from .text import TextTask
from .vae import VAETask

TASKS: dict[str, type[Task]] = {"gaussian": GaussianTask, "regression": RegressionTask, "kde": KDETask, "logistic": LogisticTask, "mixture": MixtureTask, "vae": VAETask, "diffusion": DiffusionTask, "self-improve": SelfImproveTask, "text": TextTask, "eigenvalues": EigenvaluesTask}

__all__ = ["TASKS", "Task", "TaskConfig", "Theory", "TheoryCurve", "resolve_task"]


def resolve_task(name: object, base_dir: Path | None = None) -> type[Task]:
    """The task class named ``name``: a built-in name or ``"path/to/file.py:ClassName"``."""
    if not isinstance(name, str):
        raise ConfigError(f"task.name must be one of {sorted(TASKS)} or 'file.py:ClassName'; got {name!r}")
    if name in TASKS:
        return TASKS[name]
    if ":" not in name or not name.split(":", 1)[0].endswith(".py"):
        raise ConfigError(f"task.name must be one of {sorted(TASKS)} or 'file.py:ClassName'; got {name!r}")
    file, cls_name = name.rsplit(":", 1)
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        raise ConfigError(f"task.name refers to {path}, which does not exist")
    # A stable module name, so pickled checkpoints of a user task load again in a later process.
    module_name = "synthloop_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise ConfigError(f"task.name: importing {path} failed: {error!r}") from error
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"task.name: {path} defines no synthloop.Task subclass named {cls_name!r}")
    return cls
