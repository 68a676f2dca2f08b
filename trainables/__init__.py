"""The tasks: the reference ones by name, and a user's own from a file or a module.

``--task`` takes a built-in name (``breast_cancer``), a Python file (``path/to/my_task.py``) or
an importable module (``my_package.my_module``); either of the last two defines ``TASK``, a
``core.task.TaskSpec``. Built-in tasks live in their own modules, imported only when used, so
listing or validating their names costs nothing (``run_all.py --help`` imports no torch).

How Ray's workers import a user's task (they unpickle its Trainable class, which names its module):
- a task file is imported as the module named by its file name (``my_task``). The Ray a run
  starts gets the file's folder on its workers' ``PYTHONPATH``; a Ray cluster (``--ray-address``)
  gets the file in the job's ``runtime_env`` ``py_modules``, which Ray copies to every node and
  puts on its workers' path (``machine.start_ray``). ``working_dir`` would upload the whole folder
  the file sits in, whatever else is in it.
- a module (``my_package.my_task``) is imported by name, like any Ray code: local workers find
  it from the folder the run was started in (Ray puts that on their path), a cluster's nodes need
  it installed.
- both are also registered with cloudpickle to be pickled *by value*, so the classes travel
  inside the pickle even to workers of a Ray that was started before the task was known (a
  notebook's); there, only what pickles by name (a module-level ``functools.lru_cache``) still
  needs the module importable.
What the task imports (torch, scikit-learn, the user's helpers) must be installed on every node.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

# task name -> module that defines TASK (a core.task.TaskSpec)
TASK_MODULES = {
    "breast_cancer": "trainables.breast_cancer",
    "cifar10": "trainables.cifar10",
    "imdb": "trainables.imdb",
}


# Example task files shipped with the package (trainables/examples/), for `lowres-tune example NAME`:
# a user's starting point, written into their folder, since a wheel's files are not theirs to edit.
EXAMPLES = {"diabetes": "diabetes_task.py"}


def example_text(name: str) -> str:
    """The source of an example task file; ValueError naming the examples for an unknown one."""
    from importlib import resources

    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; examples: {', '.join(sorted(EXAMPLES))}")
    return resources.files(__name__).joinpath("examples", EXAMPLES[name]).read_text()


# name -> TaskSpec given as an object (the Python API: experiments.compare), this process only
_REGISTERED: dict = {}


def register_task(task) -> str:
    """Make a TaskSpec object a task ``get_task`` finds by its name, in this process; returns the name."""
    if task.name in TASK_MODULES:
        raise ValueError(f"task {task.name!r} is the name of a built-in task; give yours another name")
    if is_task_file(task.name) or not task.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"task name {task.name!r} must be letters, digits, _ or - (it names the run's folder)")
    if task.trainable is None:
        raise ValueError(f"task {task.name!r} names no trainable (TaskSpec.trainable='module:Class')")
    _REGISTERED[task.name] = task
    return task.name


def task_names() -> list[str]:
    return sorted(TASK_MODULES)


def is_task_file(reference: str) -> bool:
    """Whether ``--task`` names a file (``.py``, or anything with a path separator) rather than a
    built-in task or a module."""
    return reference.endswith(".py") or os.sep in reference or "/" in reference


def get_task(reference: str):
    """The TaskSpec of a built-in task name, a task file or a task module; ValueError with one
    line (what is wrong, what is allowed) for anything else."""
    if reference in TASK_MODULES:
        return importlib.import_module(TASK_MODULES[reference]).TASK
    if reference in _REGISTERED:
        return _REGISTERED[reference]
    if is_task_file(reference):
        module = _import_file(reference)
    elif reference.replace(".", "").replace("_", "").isalnum() and not reference[:1].isdigit():
        module = _import_module(reference)
    else:
        raise ValueError(f"unknown task {reference!r}; allowed: {', '.join(task_names())}, a task file "
                         "(path/to/my_task.py) or an importable module (my_package.my_task) defining TASK")
    return _task_of(module, reference)


def task_file(reference: str) -> str | None:
    """The absolute path of a task file ``--task`` names, or None for a built-in task or a module."""
    if reference in TASK_MODULES or not is_task_file(reference):
        return None
    return os.path.abspath(os.path.expanduser(reference))


def _import_file(path: str):
    """The task file imported as the module named by its file name (``diabetes_task``), its folder
    first on the path: the name Ray's workers import it by too (machine.start_ray puts the folder
    on their path, or ships the file to a cluster's nodes)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise ValueError(f"task file {path!r} does not exist")
    folder, file = os.path.split(path)
    name, suffix = os.path.splitext(file)
    if suffix != ".py" or not name.isidentifier():
        raise ValueError(f"task file {path!r}: its name must be a Python module name ending in .py, like my_task.py")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if os.path.abspath(getattr(loaded, "__file__", "") or "") == path:
            return loaded  # imported already (the spec's check, then the run; a resume)
        raise ValueError(f"task file {path!r} has the name of the module {name!r} already imported from "
                         f"{getattr(loaded, '__file__', None) or 'a built-in'}; rename the file")
    found = importlib.util.find_spec(name)
    if found is not None and os.path.abspath(found.origin or "") != path:
        raise ValueError(f"task file {path!r} has the name of the installed module {name!r} ({found.origin}), "
                         "which Ray's workers would import instead; rename the file")
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the file's own helpers next to it import as they would for `python my_task.py`
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ValueError(f"task file {path!r} failed to import: {_one_line(exc)}") from None
    return module


def _import_module(name: str):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module next to the user, as `python -m` would find it
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ValueError(f"unknown task {name!r}; allowed: {', '.join(task_names())}, a task file "
                             f"(path/to/my_task.py) or an importable module defining TASK (no module {exc.name!r})") from None
        raise ValueError(f"task module {name!r} failed to import: {_one_line(exc)}") from None
    except Exception as exc:
        raise ValueError(f"task module {name!r} failed to import: {_one_line(exc)}") from None


def _task_of(module, reference: str):
    from ray import cloudpickle

    from core.task import TaskSpec

    task = getattr(module, "TASK", None)
    if task is None:
        raise ValueError(f"task {reference!r} defines no TASK (a core.task.TaskSpec)")
    if not isinstance(task, TaskSpec):
        raise ValueError(f"task {reference!r}: TASK is a {type(task).__name__}, not a core.task.TaskSpec")
    if task.trainable is not None and ":" not in task.trainable:  # a class of the task's own module
        if not hasattr(module, task.trainable):
            raise ValueError(f"task {reference!r}: its trainable {task.trainable!r} is not defined in it")
        import dataclasses

        task = dataclasses.replace(task, trainable=f"{module.__name__}:{task.trainable}")
        module.TASK = task
    cloudpickle.register_pickle_by_value(module)  # its classes travel to Ray's workers by value (above)
    return task


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_model(run_dir, method: str | None = None):
    """The model of a run's pick with its best-validation weights, on the CPU, in eval mode.

    ``method``: the method's folder name under the run's ``tune/`` (``bayesopt-fifo-s0``); None: the
    run's best pick. The task's model is built as a trial built it (its ``TrainingRun`` from the
    trial's config, which loads the task's data), then the checkpoint's weights (safetensors: reading
    them runs no code) are loaded into it."""
    import json
    from pathlib import Path

    import torch

    from core.records import read_csv_rows
    from core.rules import Objective, method_name
    from trainables.base import read_checkpoint, seed_everything

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    resolved = info.get("resolved", {})
    objective = Objective(resolved.get("metric", "val_accuracy"), resolved.get("mode", "max"))
    picks = [r for r in read_csv_rows(run_dir / "summary.csv") if r.get("best_trial_id")]
    if method is not None:
        picks = [r for r in picks if method_name(r["searcher"], r["scheduler"], int(r["seed"])) == method]
    if not picks:
        raise ValueError(f"no pick {'of ' + method + ' ' if method else ''}in {run_dir / 'summary.csv'}")
    row = max(picks, key=lambda r: objective.signed(float(r[objective.best_column])))
    trial = Path(info.get("tune_storage") or run_dir / "tune") / method_name(
        row["searcher"], row["scheduler"], int(row["seed"])) / f"trial_{row['best_trial_id']}"
    checkpoints = sorted(trial.glob("checkpoint_*"))
    if not checkpoints:
        raise ValueError(f"the weights of {trial} were not kept (--keep-checkpoints picks or all keeps every pick's)")
    config = json.loads((trial / "params.json").read_text())
    task = get_task(info["spec"]["task"]).for_budget(info["spec"].get("budget", "full"))
    trainable = task.load_trainable()
    seed_everything(int(config.get("seed", 0)))
    run = trainable.run_cls(config, trainable.load_data(config), torch.device("cpu"))
    weights, _, _ = read_checkpoint(str(checkpoints[-1]))
    run.model.load_state_dict(weights)
    return run.model.eval()
