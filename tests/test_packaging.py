"""What a user installs, not the working tree: the wheel in a fresh virtual environment, used from
a folder outside the clone that has a package of the user's named like one of ours.

The fresh environment gets this environment's dependencies through a .pth line (not pip: a
minute of copying torch), which adds their folder to sys.path without running its .pth files, so
the clone's editable install is not visible there; the wheel itself is installed by pip with
--no-deps. Before: `core` was not packaged (`from analysis import load_run` failed outside the
clone) and there was no `lowres-tune` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT


# A classifier selected by its validation loss, as a user writes it from docs/your-own-task.md.
LOSS_TASK = """import dataclasses
from trainables.breast_cancer import TASK as BC, BreastCancerTrainable

TASK = dataclasses.replace(BC, name="bc_loss", trainable="LossTrainable", metric="val_loss", mode="min",
                           diverged_values={**BC.diverged_values, "loss": 1e6})


class LossTrainable(BreastCancerTrainable):
    task = TASK
"""


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env


@pytest.mark.slow
def test_the_wheel_installs_and_works_outside_the_clone(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("lowres_tune-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)

    user = tmp_path / "my-project"  # a researcher's folder, with their own "experiments" package
    (user / "experiments").mkdir(parents=True)
    (user / "experiments" / "__init__.py").write_text("MINE = True\n")
    env = _clean_env()

    def run(*args, **kwargs):
        return subprocess.run([*map(str, args)], cwd=user, env=env, capture_output=True, text=True, timeout=1200,
                              **kwargs)

    where = run(python, "-c", "import analysis, core; print(analysis.__file__); print(core.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(str(site) in line for line in where.stdout.split())  # the wheel's, not the clone's

    smoke = run(venv / "bin" / "lowres-tune", "--task", "breast_cancer", "--budget", "smoke", "--methods", "grid:fifo",
                "--results-dir", "results", "--quiet")
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    (run_dir,) = (user / "results" / "breast_cancer").iterdir()

    # the README's pandas snippet, from the user's folder (their "experiments" does not matter to it)
    snippet = run(python, "-c", f"from analysis import load_run\nrun = load_run({str(run_dir)!r})\n"
                                "print(run.curves.groupby(['searcher', 'scheduler'])['val_accuracy'].max().to_json())")
    assert snippet.returncode == 0, snippet.stderr
    best = pd.read_json(__import__("io").StringIO(snippet.stdout), typ="series")
    assert len(best) == len(pd.read_csv(run_dir / "summary.csv")) and (best > 0.5).all()

    # the replay, from a folder without a package of that name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replay = subprocess.run([str(python), "-m", "experiments.replay", str(run_dir), "--seeds", "1", "--methods",
                             "random:fifo", "--workers", "1", "--out", str(elsewhere / "replay")], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert (elsewhere / "replay" / "summary.md").is_file()

    # errors name the command the user typed
    bad = run(venv / "bin" / "lowres-tune", "--task", "no_such_task.py")
    assert bad.returncode == 2 and bad.stderr.startswith("lowres-tune: error: task file "), bad.stderr

    # the README's own-task commands and snippet, exactly as written, from an empty folder
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Your own task"):readme.index("## Options")]
    commands = section.split("```bash\n")[1].split("```")[0].strip().splitlines()
    snippet = section.split("```python\n")[1].split("```")[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    path_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=empty, env=path_env, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, command + "\n" + done.stdout[-2000:] + done.stderr[-2000:]
    done = subprocess.run([str(python), "-c", snippet], cwd=empty, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best_val_rmse" in done.stdout and "val_regret_rmse" in done.stdout  # run.table, printed

    # a classifier selected by its validation loss: scored on test_loss, analysed and replayed
    (user / "loss_task.py").write_text(LOSS_TASK)
    loss = run(venv / "bin" / "lowres-tune", "--task", "loss_task.py", "--budget", "smoke", "--methods",
               "grid,random:asha", "--record-test-curves", "--results-dir", "loss-results", "--quiet")
    assert loss.returncode == 0, loss.stdout[-2000:] + loss.stderr[-2000:]
    (loss_run,) = (user / "loss-results" / "bc_loss").iterdir()
    summary = pd.read_csv(loss_run / "summary.csv")
    assert summary["test_loss"].notna().all() and summary["best_val_loss"].notna().all()
    assert __import__("json").loads((loss_run / "run.json").read_text())["status"] == "finished"
    assert run(python, "-m", "analysis", str(loss_run)).returncode == 0
    # from a folder without a package named experiments (the user's shadows ours for `python -m`)
    replayed = subprocess.run([str(python), "-m", "experiments.replay", str(loss_run), "--seeds", "2", "--methods",
                               "random:asha", "--workers", "1", "--out", str(tmp_path / "loss-replay")], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=600)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert "test_loss_median" in pd.read_csv(tmp_path / "loss-replay" / "summary.csv").columns

    # the recommended method ends with its pick, and the lines of Python it prints load the weights
    chosen = run(venv / "bin" / "lowres-tune", "--task", "breast_cancer", "--budget", "smoke", "--methods",
                 "recommended", "--results-dir", "chosen", "--quiet")
    assert chosen.returncode == 0, chosen.stdout[-2000:] + chosen.stderr[-2000:]
    block = chosen.stdout[chosen.stdout.index("recommended "):]
    assert "configuration: {" in block and "best.safetensors" in block
    lines = block[block.index("in Python:"):].splitlines()[1:4]
    loaded = run(python, "-c", "\n".join(line.strip() for line in lines))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "Linear" in loaded.stdout  # the task's network, printed

    # shadowing: in the user's folder, `import run_all` (what the command runs) names their package
    # in one line instead of importing it as ours
    shadowed = run(python, "-c", "import run_all")
    assert shadowed.returncode != 0
    last = shadowed.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"{user / 'experiments'} shadows lowres-tune's 'experiments'" in last
