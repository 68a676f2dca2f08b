"""Declarations and rules that real runs, the replay benchmark and the analysis share.

Nothing here imports torch, Ray or another package of this project, so every layer can
import it (``experiments`` and ``analysis`` both read the record schemas without importing
each other) and the command lines can validate input without loading a framework:

- ``core.records``: the run folder's column names and report names (spelled only here) and
  the atomic writers;
- ``core.task``: ``TaskSpec``, a task's declared facts;
- ``core.rules``: how a trial's best epoch and a method's pick are chosen, and how a
  method's folder is named; one definition each;
- ``core.cli``: what both command lines share (one-line argument errors).
"""

import importlib.util
from pathlib import Path

# lowres-tune's top-level names are generic (the design card fixes them): a user's own package
# of the same name in the folder they run from comes first on sys.path and would be imported
# instead of ours. Each of our packages checks the ones it imports, so that shows as one clear
# error, not as a confusing one deep inside (or as the user's code running in ours).
OWN_ROOT = Path(__file__).resolve().parent.parent


def check_not_shadowed(*names: str) -> None:
    """ImportError naming the folder, where one of ``names`` would not be lowres-tune's own."""
    for name in names:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None:  # a namespace folder (no __init__.py) never takes ours' place
            continue
        found = Path(origin).resolve()
        if OWN_ROOT not in found.parents:
            raise ImportError(f"{found.parent if found.name == '__init__.py' else found} shadows lowres-tune's "
                              f"'{name}' (Python finds the folder you run from first): rename it, or run from "
                              "another folder")
