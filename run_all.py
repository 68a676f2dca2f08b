"""Compare hyperparameter search methods on one task: ``python run_all.py --task breast_cancer``.

Command line -> ExperimentSpec (validated) -> experiments.runner.run -> the run folder and
the summary table. ``--help`` imports neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import check_not_shadowed

check_not_shadowed("experiments", "analysis", "searchers", "trainables")  # before importing them: one clear error

from core.cli import OneLineErrorParser, program  # noqa: E402
from experiments.spec import (BUDGETS, DEFAULT_RUN_METHODS, ExperimentSpec, RunFailed, SpecError,  # noqa: E402
                              StorageFailed, format_methods, parse_methods, parse_seeds)
from experiments.packing import AUTO  # noqa: E402
from searchers import SCHEDULERS, SEARCHERS  # noqa: E402
from trainables import task_file, task_names  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=program(),
        description="Tune a reference task with several search methods on one machine and compare "
                    "their quality (accuracy, F1, AUC) and cost (time, trial-seconds, GPU-seconds).")
    parser.add_argument("--task", default="breast_cancer",
                        help=f"task to tune: {', '.join(task_names())}, or your own: a file (path/to/my_task.py) "
                             "or a module (my_package.my_task) defining TASK, a TaskSpec; start from "
                             f"`{program()} example diabetes > my_task.py` (docs/your-own-task.md)")
    default_methods = format_methods(DEFAULT_RUN_METHODS)
    parser.add_argument("--methods", default=default_methods,
                        help=f"comma-separated searcher[:scheduler], or recommended (the method the LCBench evidence "
                             f"picks for the run's budget); searchers {', '.join(SEARCHERS)}, schedulers "
                             f"{', '.join(SCHEDULERS)}; a searcher alone gets its default scheduler (fifo for grid, "
                             f"random and shuffle, asha otherwise), searcher:* fifo and asha; --list-methods says what "
                             f"each is for (default: {default_methods})")
    parser.add_argument("--time-budget", type=_duration, default=None, metavar="DURATION",
                        help="compute each method may spend, e.g. 90m, 4h: trial-seconds on the CPU, GPU-seconds "
                             "(seconds x the trial's share) on a GPU; a method then stops, its running trials at "
                             "their next epoch, and the report compares methods at equal compute (default: none, "
                             "each method runs its trials)")
    parser.add_argument("--list-methods", action="store_true",
                        help="list the methods with the budgets the evidence recommends each for, and exit")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="trials per random/hyperopt/bayesopt method (default: a quarter of the grid; "
                             "the smoke budget's own with --budget smoke)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2: each method runs once per seed")
    parser.add_argument("--budget", default="full",
                        help=f"{' or '.join(BUDGETS)}: smoke runs a tiny space through the same code path")
    parser.add_argument("--results-dir", default="results", help="where run folders are created (default: results)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials running at once (default: as many as the CPUs hold)")
    parser.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial (default: the task's)")
    parser.add_argument("--gpu-id", type=int, default=None,
                        help="pin the run to the K-th visible GPU (nvidia-smi's order within CUDA_VISIBLE_DEVICES, "
                             "which is set to that card before Ray starts; default: the first visible GPU)")
    parser.add_argument("--gpus-per-trial", type=_gpu_share, default=None,
                        help="GPU fraction per trial, in [0, 1]: 0.25 packs four trials on the GPU, 0 keeps them on "
                             "the CPU; auto: each trial's from its configuration's memory, measured on the card "
                             "before the first method (default: the task's)")
    parser.add_argument("--monitor-interval", type=float, default=1.0,
                        help="seconds between resource samples (GPU, CPU, memory) written to resources.csv")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a failed trial (Ray's FailureConfig; an out-of-memory error on a shared GPU "
                             "often passes; default 2)")
    parser.add_argument("--resume", default=None, metavar="RUN_FOLDER",
                        help="continue an interrupted run in its folder with its own settings: finished methods are "
                             "kept, the interrupted one continues from Tune's state, the rest run")
    parser.add_argument("--quiet", action="store_true",
                        help="print only errors and the final table (no progress lines, no pointers)")
    parser.add_argument("--keep-checkpoints", default="best", choices=("best", "picks", "all"),
                        help="trial checkpoints (best-validation weights) left on disk: the run's best pick "
                             "(default), every method's pick, or all")
    parser.add_argument("--pause-disk-gb", type=float, default=None,
                        help="with a pausing scheduler (--methods random:promotion): disk for paused trials' training "
                             "states; beyond it the lowest-ranked paused trials are stopped for good (default: a "
                             "quarter of the free disk, at most 20)")
    parser.add_argument("--record-test-curves", action="store_true",
                        help="also score the test split after every epoch, into curves.csv: a grid run made so is "
                             "a table for the replay benchmark (python -m experiments.replay); selection never sees it")
    parser.add_argument("--storage", default=None, metavar="PATH_OR_URI",
                        help="where Ray Tune keeps trial folders: a path every node of a cluster reaches (NFS) or a "
                             "pyarrow URI such as s3://bucket/runs (default: the run folder's tune/)")
    parser.add_argument("--ray-address", default=None,
                        help="connect to an existing Ray cluster (e.g. auto or ray://host:10001) instead of starting one")
    task_options = parser.add_argument_group("task options (for the tasks that take them)")
    task_options.add_argument("--data-dir", default=None,
                              help="local folder with train.parquet and test.parquet in the hub's schema "
                                   "(default: the Hugging Face hub, which needs a network)")
    task_options.add_argument("--model", default=None,
                              help="model: a Hugging Face name or a local folder (imdb), or a torchvision "
                                   "architecture (cifar10)")
    task_options.add_argument("--subset", type=int, default=None,
                              help="use N stratified examples of each split, for CPU runs and quick looks")
    task_options.add_argument("--cache-dir", default=None,
                              help="where decoded or tokenized data is cached (default: ~/.cache/lowres-tune)")
    return parser


TASK_OPTION_FLAGS = ("data_dir", "model", "subset", "cache_dir")


def _duration(text: str) -> float:
    from core.cli import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gpu_share(text: str) -> float | str:
    """--gpus-per-trial: a number, or auto (the spec checks the number's range)."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share of the GPU in [0, 1] or auto, got {text!r}") from None


def _absolute(path: str) -> str:
    # Trials run in their own working folders: a path relative to the user's folder must not be.
    return os.path.abspath(os.path.expanduser(path))


def parse_spec(argv: list[str] | None = None) -> ExperimentSpec:
    args = build_parser().parse_args(argv)
    args.task = task_file(args.task) or args.task  # a file's absolute path: a --resume from elsewhere finds it
    for name in ("data_dir", "cache_dir"):
        if getattr(args, name) is not None:
            setattr(args, name, _absolute(getattr(args, name)))
    if args.model is not None and os.path.isdir(os.path.expanduser(args.model)):
        args.model = _absolute(args.model)
    return ExperimentSpec(
        task=args.task,
        methods=parse_methods(args.methods),
        num_samples=args.num_samples,
        seeds=parse_seeds(args.seeds),
        budget=args.budget,
        results_dir=Path(args.results_dir),
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        ray_address=args.ray_address,
        gpu_id=args.gpu_id,
        gpus_per_trial=args.gpus_per_trial,
        monitor_interval=args.monitor_interval,
        record_test_curves=args.record_test_curves,
        max_failures=args.max_failures,
        keep_checkpoints=args.keep_checkpoints,
        pause_disk_gb=args.pause_disk_gb,
        quiet=args.quiet,
        storage=args.storage if args.storage is None or "://" in args.storage else _absolute(args.storage),
        task_options={name: getattr(args, name) for name in TASK_OPTION_FLAGS if getattr(args, name) is not None},
        time_budget=args.time_budget,
    )


def parse_resume(argv: list[str] | None) -> tuple[str, bool] | None:
    """(the run folder of ``--resume``, --quiet), or None; SpecError where settings that change
    results come with it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None:
        return None
    changed = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
               if name not in ("resume", *DISPLAY_FLAGS) and value != parser.get_default(name)]
    if changed:
        raise SpecError(f"--resume takes no settings that change results (got {', '.join(changed)}): "
                        "the run continues with those in its run.json; display flags (--quiet) may be given")
    return _absolute(args.resume), args.quiet


# Flags that change what is printed, never what is computed: --resume takes them.
DISPLAY_FLAGS = ("quiet", "list_methods")


def _main(argv: list[str] | None = None) -> int:
    try:
        if "--list-methods" in (argv if argv is not None else sys.argv[1:]):
            build_parser().parse_args(argv)  # --help and bad flags as usual
            from searchers.catalog import method_lines

            print("\n".join(method_lines()))
            return 0
        resuming = parse_resume(argv)
        if resuming is not None:
            from experiments.resume import resume

            resume(resuming[0], quiet=resuming[1])
            return 0
        spec = parse_spec(argv)
        from experiments.runner import run

        run(spec)
    except SpecError as exc:  # bad settings, or the task's own checks (data folder, model), before anything is written
        print(f"{program()}: error: {exc}", file=sys.stderr)
        return 2
    except StorageFailed as exc:  # a full or read-only disk: stopped, whole files, resumable
        print(f"{program()}: error: {exc}", file=sys.stderr)
        return 1
    except RunFailed as exc:  # written and reported, but a method has nothing to show
        print(f"{program()}: error: {exc}", file=sys.stderr)
        return 1
    return 0


INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def write_example(argv: list[str]) -> int:
    """``lowres-tune example NAME``: an example task file on stdout (``> my_task.py`` to edit it)."""
    from trainables import EXAMPLES, example_text

    parser = OneLineErrorParser(prog=f"{program()} example",
                                description="Print an example task file, to copy and edit: "
                                            f"{program()} example diabetes > my_task.py")
    parser.add_argument("name", choices=sorted(EXAMPLES))
    sys.stdout.write(example_text(parser.parse_args(argv).name))
    return 0


def main(argv: list[str] | None = None) -> int:
    from experiments.interrupt import Interrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["example"]:
        return write_example(argv[1:])
    try:
        return _main(argv)
    except Interrupted as exc:
        print(f"{program()}: {exc}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:  # before the run folder exists (start-up): nothing to resume
        print(f"{program()}: interrupted while starting, before any method ran", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
