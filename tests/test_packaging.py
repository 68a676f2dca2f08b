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

from tests.conftest import ROOT


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env


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

    # shadowing: in the user's folder, `import run_all` (what the command runs) names their package
    # in one line instead of importing it as ours
    shadowed = run(python, "-c", "import run_all")
    assert shadowed.returncode != 0
    last = shadowed.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"{user / 'experiments'} shadows lowres-tune's 'experiments'" in last
