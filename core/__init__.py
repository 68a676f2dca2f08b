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
