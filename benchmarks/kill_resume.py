"""Kill a smoke run with SIGKILL in the middle of a method, resume it, and compare it with an
uninterrupted run of the same settings.

    python benchmarks/kill_resume.py [--methods grid:fifo,random:fifo,bayesopt:asha]

Prints the trials finished at the kill, how many of them were trained again after the resume
(the target is zero), and per method the trials of the resumed run against the uninterrupted
one (grid and random are deterministic in their seed, so their configurations must match).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.tune_adapter import trial_statuses  # noqa: E402
from trainables import get_task  # noqa: E402


def cli(args, **kwargs):
    return subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="grid:fifo,random:fifo,bayesopt:asha")
    parser.add_argument("--kill-in", default="random-fifo-s0", help="the method folder to kill the run in")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    common = ["--task", "breast_cancer", "--budget", "smoke", "--methods", args.methods]
    log = open(work / "log.txt", "w")  # noqa: SIM115 - closed at the end

    started = time.perf_counter()
    assert cli([*common, "--results-dir", str(work / "reference")], stdout=log, stderr=log).wait() == 0
    reference_seconds = time.perf_counter() - started

    process = cli([*common, "--results-dir", str(work / "killed")], stdout=log, stderr=log, start_new_session=True)
    at_kill = None
    while process.poll() is None:
        folders = list((work / "killed" / "breast_cancer").glob(f"*/tune/{args.kill_in}"))
        statuses = trial_statuses(folders[0]) if folders else {}
        if "TERMINATED" in statuses.values() and set(statuses.values()) != {"TERMINATED"}:
            os.killpg(process.pid, signal.SIGKILL)
            at_kill = statuses
            break
        time.sleep(0.05)
    process.wait()
    if at_kill is None:
        sys.exit(f"the run was not caught inside {args.kill_in}; see {work / 'log.txt'}")
    (run_dir,) = (work / "killed" / "breast_cancer").iterdir()
    method_dir = run_dir / "tune" / args.kill_in
    finished = sorted(t for t, s in at_kill.items() if s == "TERMINATED")
    before = {t: (method_dir / f"trial_{t}" / "result.json").read_bytes() for t in finished}

    started = time.perf_counter()
    assert cli(["--resume", str(run_dir)], stdout=log, stderr=log).wait() == 0
    resume_seconds = time.perf_counter() - started
    log.close()
    rerun = [t for t in finished if (method_dir / f"trial_{t}" / "result.json").read_bytes() != before[t]]

    (reference_dir,) = (work / "reference" / "breast_cancer").iterdir()
    ours, theirs = pd.read_csv(run_dir / "trials.csv"), pd.read_csv(reference_dir / "trials.csv")
    config = [f"config/{n}" for n in get_task("breast_cancer").for_budget("smoke").space]
    print(f"killed in {args.kill_in}: {len(finished)} of {len(at_kill)} trials finished at the kill "
          f"({len(at_kill)} created)")
    print(f"finished_trials_rerun={len(rerun)}")
    for (searcher, scheduler), mine in ours.groupby(["searcher", "scheduler"], sort=False):
        other = theirs[(theirs["searcher"] == searcher) & (theirs["scheduler"] == scheduler)]
        same = sorted(map(tuple, mine[config].to_numpy().tolist())) == sorted(map(tuple, other[config].to_numpy().tolist()))
        print(f"{searcher}:{scheduler}: resumed run {len(mine)} trials ({mine['status'].value_counts().to_dict()}), "
              f"uninterrupted {len(other)}; same configurations: {same}")
    print(f"uninterrupted run {reference_seconds:.1f} s; resume {resume_seconds:.1f} s; folders in {work}")


if __name__ == "__main__":
    main()
