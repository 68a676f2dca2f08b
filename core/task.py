"""``TaskSpec``: a task's facts, declared once in its module (``trainables/<task>.py``).

A plain declaration: it needs neither torch nor Ray, so the replay benchmark and the command
line's checks build and read one without loading a framework. The Trainable that trains the
task is named by its import path and loaded only when a run needs it.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from core.records import CLASSIFICATION_METRICS, EPOCH
from core.rules import Objective

DEFAULT_METRIC = "val_accuracy"  # the one metric whose direction (max) a task need not state
# a classification epoch that diverged: no better than chance, whatever the metric
CLASSIFICATION_DIVERGED = {"accuracy": 0.0, "f1": 0.0, "auc": 0.5, "loss": math.inf}


@dataclass(frozen=True)
class TaskSpec:
    """A task's facts.

    ``space`` is the grid: every hyperparameter with its list of values. Grid search runs
    all combinations; random search, TPE and BayesOpt draw from the same lists.
    """

    name: str
    space: Mapping[str, tuple]
    # "module:Class" of the Ray Trainable; None for a declaration with nothing to run (a replay table)
    trainable: str | None = None
    # What selection, the kept weights, ASHA, the searchers and the reports optimize: val_<name> of
    # one of ``metrics``, in direction ``mode`` (max: an accuracy; min: a loss, an RMSE).
    metric: str = DEFAULT_METRIC
    # None: "max" for the default val_accuracy; any other metric must say its direction (a loss
    # maximized by a forgotten mode would tune for the worst model without a word)
    mode: str | None = None
    # What the task's evaluation (TrainingRun.evaluate) returns for a split; each epoch reports them
    # as val_<name>, and the method's pick is scored on test_<name> for each but the loss.
    metrics: tuple[str, ...] = CLASSIFICATION_METRICS
    # What an epoch whose loss turned NaN or inf reports instead (the trial ends there): a finite
    # value of the metric that ranks it last, so searchers and ASHA can still use it.
    diverged_values: Mapping[str, float] = field(default_factory=lambda: dict(CLASSIFICATION_DIVERGED))
    resource_attr: str = EPOCH  # what ASHA allocates: epochs trained
    epochs_param: str = "num_epochs"  # the hyperparameter holding a configuration's own epoch count
    # Epochs before ASHA's first cut. None: the rule fixed in advance, the smallest epoch budget
    # in the grid (no configuration is cut before the shortest one has finished). A task that
    # declares another value says why next to it; none may be chosen on the data it is reported on.
    grace_period: int | None = None
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    cpus_per_trial: float = 1.0
    # A share of the run's one GPU per trial, asked for only where a GPU exists: a quarter packs four
    # trials on it (what the reference tasks with a GPU do); 0 keeps a small model on the CPU.
    gpus_per_trial: float = 0.25
    # --gpus-per-trial auto (experiments.packing): the hyperparameters that change a trial's GPU
    # memory (batch size, sequence length, width), each combination probed once on the card, and
    # the options that make a probe short (a few batches) and its memory the worst (full padding).
    memory_params: tuple[str, ...] = ()
    probe_options: Mapping[str, Any] = field(default_factory=dict)
    # The smoke budget: the same code path on a tiny space, for tests and a first look.
    smoke_space: Mapping[str, tuple] = field(default_factory=dict)
    smoke_grace_period: int = 1
    smoke_num_samples: int = 4
    smoke_options: Mapping[str, Any] = field(default_factory=dict)  # option defaults of the smoke budget
    # Data and model options (data_dir, model, subset, ...) with their defaults; they join
    # every trial's config unsearched. A task without options takes none on the command line.
    options: Mapping[str, Any] = field(default_factory=dict)
    # check_options(options, task) raises ValueError with a one-line, actionable message
    # before anything is written (a missing data folder, a model that cannot be loaded).
    check_options: Callable[[dict, "TaskSpec"], None] | None = None
    # prepare(options, space) fills the task's data caches once, in the driver, before any trial
    # starts (else every worker decodes or tokenizes the whole data set at once on a first run).
    prepare: Callable[[Mapping[str, Any], Mapping[str, tuple]], None] | None = None
    # Seconds one epoch of a configuration takes (training and validation) where known in advance:
    # what --time-budget estimates the grid's compute from. None: one epoch per memory class is
    # measured before a budgeted run (experiments.estimate).
    epoch_seconds: Callable[[Mapping[str, Any]], float] | None = None
    description: str = ""
    # Classes of a classification task: a stratified --subset (and eval_subset) needs one example
    # of each, checked with the options instead of failing in every trial. None: not checked.
    num_classes: int | None = None

    def __post_init__(self):
        if self.mode is None:
            if self.metric != DEFAULT_METRIC:
                raise ValueError(f"task {self.name}: say which direction is better for {self.metric}: mode='min' "
                                 "(a loss, an error, an RMSE) or mode='max' (an accuracy, an AUC)")
            object.__setattr__(self, "mode", "max")
        if self.mode not in ("max", "min"):
            raise ValueError(f"task {self.name}: mode must be 'max' or 'min', got {self.mode!r}")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.metric not in [f"val_{m}" for m in self.metrics]:
            raise ValueError(f"task {self.name}: metric {self.metric!r} is not val_<one of its metrics> "
                             f"({', '.join(self.metrics)}); declare metrics=(...) with what its evaluation returns")
        worst = self.diverged_values.get(self.objective.name)
        if self.trainable is not None and not (isinstance(worst, (int, float)) and math.isfinite(worst)):
            raise ValueError(f"task {self.name}: diverged_values needs a finite {self.objective.name!r}: what a trial "
                             "whose loss turns NaN reports, ranked last by the searchers")
        if self.epochs_param not in self.space:
            raise ValueError(f"task {self.name}: epochs_param {self.epochs_param!r} is not in the space")
        epochs = self.space[self.epochs_param]
        if not isinstance(epochs, (tuple, list)) or not epochs or not all(
                isinstance(e, numbers.Integral) and not isinstance(e, bool) and e >= 1 for e in epochs):
            raise ValueError(f"task {self.name}: {self.epochs_param} (the epochs each configuration trains, ASHA's "
                             f"resource) must be whole numbers of at least 1, got {epochs!r}")
        for name, values in self.space.items():
            if not isinstance(values, (tuple, list)):
                raise ValueError(f"task {self.name}: hyperparameter {name!r} is not a grid of values (got "
                                 f"{type(values).__name__}); every searcher draws from the grid, e.g. (1e-3, 1e-4)")
            if not values:
                raise ValueError(f"task {self.name}: hyperparameter {name!r} has no values")
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(f"task {self.name}: hyperparameter {name!r} has a value that is not a finite number "
                                 f"({', '.join(map(str, values))})")
            if len(set(map(repr, values))) < len(values):
                raise ValueError(f"task {self.name}: hyperparameter {name!r} names a value twice "
                                 f"({', '.join(map(str, values))}); grid search would train it twice")
        object.__setattr__(self, "memory_params", tuple(self.memory_params))
        unknown = [name for name in self.memory_params if name not in self.space]
        if unknown:
            raise ValueError(f"task {self.name}: memory_params {', '.join(map(repr, unknown))} not in the space")
        if self.grace_period is None:
            object.__setattr__(self, "grace_period", int(min(self.space[self.epochs_param])))
        if not (isinstance(self.grace_period, numbers.Integral) and 1 <= self.grace_period <= self.max_t):
            raise ValueError(f"task {self.name}: grace_period must be a whole number of epochs from 1 to the largest "
                             f"{self.epochs_param} ({self.max_t}), got {self.grace_period!r}")
        if not (isinstance(self.reduction_factor, numbers.Integral) and self.reduction_factor >= 2):
            raise ValueError(f"task {self.name}: reduction_factor must be a whole number of at least 2 (ASHA keeps the "
                             f"top 1/reduction_factor), got {self.reduction_factor!r}")

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.mode)

    @property
    def max_t(self) -> int:
        """ASHA's max_t: the largest epoch count in the space."""
        return int(max(self.space[self.epochs_param]))

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.space.values())

    def configurations(self) -> list[dict]:
        """Every configuration of the grid, in the order of the space's lists."""
        names = list(self.space)
        return [dict(zip(names, values)) for values in itertools.product(*(self.space[n] for n in names))]

    def load_trainable(self) -> type:
        """The Trainable class named by ``trainable`` (imports the task's module: torch, Ray)."""
        if self.trainable is None:
            raise ValueError(f"task {self.name} declares no trainable (a replay table's task runs nothing)")
        module, _, name = self.trainable.partition(":")
        return getattr(importlib.import_module(module), name)

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The task's options with ``given`` ones applied; ValueError for options it does not take."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
            takes = ", ".join("--" + name.replace("_", "-") for name in self.options) or "none"
            raise ValueError(f"task {self.name} does not take {flags}; it takes: {takes}")
        options = {**self.options, **given}
        for name in ("subset", "eval_subset"):
            value = options.get(name)
            if value is not None and self.num_classes is not None and value < self.num_classes:
                raise ValueError(f"--{name.replace('_', '-')} {value} is smaller than the {self.num_classes} classes of "
                                 f"{self.name}: a stratified subset needs at least one example of each class")
        if self.check_options is not None:
            self.check_options(options, self)
        return options

    def for_budget(self, budget: str) -> "TaskSpec":
        """This task at budget ``full`` (the declared space) or ``smoke`` (the tiny one)."""
        if budget == "full":
            return self
        if budget == "smoke":
            space = {**self.space, **self.smoke_space}
            return dataclasses.replace(self, space=space, grace_period=self.smoke_grace_period,
                                       options={**self.options, **self.smoke_options})
        raise ValueError(f"unknown budget {budget!r}; allowed: full, smoke")
