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
