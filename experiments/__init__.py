"""Experiment specs and the runner that turns a spec into a run folder."""
