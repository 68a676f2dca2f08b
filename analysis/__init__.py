"""Load run folders into pandas and report on them.

    from analysis import load_run
    run = load_run("results/breast_cancer/<run-id>")
    run.curves.groupby(["searcher", "scheduler"])["val_accuracy"].max()

``python -m analysis <run folder>`` (re)builds the folder's ``summary.md`` and ``plots/``.
"""

from analysis.load import NotARunFolder, Run, load_run

__all__ = ["NotARunFolder", "Run", "load_run"]
