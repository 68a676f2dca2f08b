"""Every command line is validated by rule before anything is written: generated command lines
(Hypothesis, derandomized, bounded) either exit 2 with one line and no traceback and write nothing
under --results-dir, or produce a spec that every searcher and Ray accept. The run itself is
replaced by a recorder here (a run per example would take minutes); the runs are tested elsewhere.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import run_all
from experiments.spec import MAX_SEED, ExperimentSpec

NUMBERS = st.one_of(st.integers(-5, 10**22), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["0", "-0", "1e309", "nan", "inf", "", " ", "0x10", "1,5"]))
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
METHODS = st.one_of(st.sampled_from(["grid", "random:asha", "bayesopt:*", "rungbo", "grid,grid", "hyperopt:fifo,",
                                     "random:sha", "tpe"]), TEXT)
SEEDS = st.one_of(st.lists(st.integers(-3, 2**64), min_size=1, max_size=3).map(lambda s: ",".join(map(str, s))),
                  TEXT)
FLAGS = {
    "--task": st.one_of(st.sampled_from(["breast_cancer", "mnist", ""]), TEXT),
    "--methods": METHODS,
    "--seeds": SEEDS,
    "--num-samples": NUMBERS,
    "--budget": st.sampled_from(["smoke", "full", "tiny", ""]),
    "--max-concurrent": NUMBERS,
    "--cpus-per-trial": NUMBERS,
    "--gpus-per-trial": NUMBERS,
    "--gpu-id": NUMBERS,
    "--monitor-interval": NUMBERS,
    "--max-failures": NUMBERS,
    "--keep-checkpoints": st.sampled_from(["best", "picks", "all", "none"]),
}


@st.composite
def command_lines(draw):
    chosen = draw(st.lists(st.sampled_from(sorted(FLAGS)), unique=True, max_size=4))
    return [item for flag in chosen for item in (flag, str(draw(FLAGS[flag])))]


def check_accepted(spec: ExperimentSpec) -> None:
    """What every searcher, scheduler and Ray take, for a spec the command line let through."""
    assert spec.seeds and all(0 <= s <= MAX_SEED for s in spec.seeds)
    assert spec.num_samples is None or spec.num_samples >= 1
    assert spec.max_concurrent is None or spec.max_concurrent >= 1
    for value in (spec.cpus_per_trial, spec.gpus_per_trial, spec.monitor_interval):
        assert value is None or math.isfinite(value)
    assert spec.cpus_per_trial is None or spec.cpus_per_trial > 0
    assert spec.gpus_per_trial is None or 0 <= spec.gpus_per_trial <= 1
    assert spec.monitor_interval > 0 and spec.max_failures >= 0


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_generated_command_lines_are_refused_in_one_line_or_accepted_whole(argv, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    accepted = []
    monkeypatch.setattr("experiments.runner.run", lambda spec, echo=None: accepted.append(spec))
    try:
        code = run_all.main([*argv, "--results-dir", str(results)])
    except SystemExit as exc:  # argparse's own errors (one line, exit 2: core.cli.OneLineErrorParser)
        code = exc.code
    err = capsys.readouterr().err
    assert not results.exists()  # nothing written either way (the run itself is the recorder)
    event("accepted" if accepted else "refused")
    if accepted:
        assert code == 0 and err == ""
        check_accepted(accepted[0])
    else:
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "error:" in err, (argv, err)


@pytest.mark.parametrize("argv, fragment", [
    (["--seeds", "99999999999999999999"], "has a seed above 4294967295"),
    (["--cpus-per-trial", "nan"], "--cpus-per-trial must be a positive number"),
    (["--monitor-interval", "inf"], "--monitor-interval must be a positive number"),
    (["--gpus-per-trial", "nan"], "--gpus-per-trial must be in [0, 1]"),
])
def test_known_bad_values_name_the_flag(argv, fragment, tmp_path, capsys):
    code = run_all.main([*argv, "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and len(err.splitlines()) == 1


# --- a TaskSpec a user writes (docs/your-own-task.md) ---------------------------------------------
VALUES = st.one_of(st.integers(-2, 200), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.sampled_from(["relu", "tanh", ""]), st.none())
GRID = st.one_of(st.lists(VALUES, max_size=4).map(tuple), st.lists(VALUES, max_size=3), VALUES,
                 st.sampled_from(["abc", {"a": 1}, range(3)]))
EPOCHS = st.one_of(st.lists(st.integers(-1, 30), max_size=3).map(tuple), GRID)
TASK_ARGS = st.fixed_dictionaries({
    "space": st.dictionaries(st.sampled_from(["lr", "width", "act"]), GRID, max_size=3),
    "epochs": EPOCHS,
    "metric": st.sampled_from(["val_accuracy", "val_rmse", "val_loss", "accuracy", "val_"]),
    "mode": st.sampled_from(["max", "min", "maximize", ""]),
    "metrics": st.sampled_from([None, ("rmse", "loss"), ("accuracy",), ()]),
    "grace_period": st.one_of(st.none(), st.integers(-1, 40), st.floats(allow_nan=True)),
    "reduction_factor": st.one_of(st.integers(-1, 5), st.floats(allow_nan=True)),
    "diverged": st.sampled_from([None, {"rmse": 1e3, "loss": math.inf}, {"rmse": math.nan}, {}]),
})


@settings(max_examples=400, deadline=None, derandomize=True)
@given(TASK_ARGS)
def test_a_generated_taskspec_is_valid_or_refused_in_one_line(args):
    """A TaskSpec either refuses with one line naming the task, or is one every part can run: a
    non-empty grid of distinct finite values, whole epochs >= 1, a metric it evaluates, a direction,
    ASHA settings in range and a finite value for a diverged trial."""
    from core.task import TaskSpec

    kwargs = {"name": "user", "trainable": "user_task:Trainable", "space": {**args["space"], "num_epochs": args["epochs"]},
              "metric": args["metric"], "mode": args["mode"], "grace_period": args["grace_period"],
              "reduction_factor": args["reduction_factor"]}
    if args["metrics"] is not None:
        kwargs["metrics"] = args["metrics"]
    if args["diverged"] is not None:
        kwargs["diverged_values"] = args["diverged"]
    try:
        task = TaskSpec(**kwargs)
    except ValueError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("task user: "), message
        event("refused")
        return
    event("accepted")
    assert task.grid_size >= 1 and task.mode in ("max", "min")
    for values in task.space.values():
        assert isinstance(values, (tuple, list)) and len(values) == len(set(map(repr, values)))
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in values)
    assert all(isinstance(e, int) and e >= 1 for e in task.space["num_epochs"])
    assert 1 <= task.grace_period <= task.max_t and task.reduction_factor >= 2
    assert task.metric in [f"val_{m}" for m in task.metrics]
    assert math.isfinite(task.diverged_values[task.objective.name])
