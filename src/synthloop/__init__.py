"""synthloop: run, predict and explain generate → verify → retrain loops.

>>> import synthloop
>>> run = synthloop.run("regression-workflows", replicates=20, out=None)   # doctest: +SKIP
>>> run.metrics.head()                                                      # doctest: +SKIP
"""

from .api import Run, load, run, theory_frame
from .experiment import Experiment, list_presets, load_experiment
from .pool import Mixture, Pool, TrainingSet
from .tasks import Task, TaskConfig, Theory, TheoryCurve
from .validation import ConfigError
from .workflows import Workflow

__all__ = [
    "ConfigError",
    "Experiment",
    "Mixture",
    "Pool",
    "Run",
    "Task",
    "TaskConfig",
    "Theory",
    "TheoryCurve",
    "TrainingSet",
    "Workflow",
    "load",
    "load_experiment",
    "list_presets",
    "run",
    "theory_frame",
]
