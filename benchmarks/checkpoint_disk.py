"""Checkpoint bytes an IMDB run leaves on disk, as a multiple of one model's fp32 weights.

Runs the IMDB smoke comparison (every default method) through run_all.py on the tests' own
fixtures (a tiny DistilBERT-shaped model and a tiny IMDB folder: no network, no ../shared),
once with ``--keep-checkpoints best`` (the default) and once with ``all``, sampling the bytes
under ``tune/*/trial_*/checkpoint_*`` every 0.05 s. Every checkpoint is one copy of the model's
weights, so the multiple does not depend on the model's size: it is what a full DistilBERT
run leaves too (target: <= 3 x one model's fp32 weights).

``--methods random:promotion`` measures a pausing scheduler's run instead: each paused trial's
checkpoint then holds its training state too (model, Adam's two moments, the best weights: ~4x),
``--pause-disk-gb`` bounds them, and ``state_files_left`` must be 0 at the end.

    python benchmarks/checkpoint_disk.py
    python benchmarks/checkpoint_disk.py --methods random:promotion --num-samples 12 --keep best --pause-disk-gb 0.0005
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def checkpoint_bytes(results: Path) -> int:
    total = 0
    for folder in results.glob("*/*/tune/*/trial_*/checkpoint_*"):
        for path in folder.rglob("*"):
            try:
                total += path.stat().st_size if path.is_file() else 0
            except FileNotFoundError:  # deleted while we looked
                pass
    return total


def run(keep: str, fixtures: dict, work: Path, extra: list[str]) -> tuple[int, int, int, int]:
    results = work / f"results-{keep}"
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], checkpoint_bytes(results))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--task", "imdb", "--budget", "smoke", "--data-dir",
                    fixtures["data"], "--model", fixtures["model"], "--cache-dir", str(work / "cache"),
                    "--results-dir", str(results), "--keep-checkpoints", keep, "--gpus-per-trial", "0", *extra],
                   check=True, capture_output=True, cwd=ROOT)
    stop.set()
    watcher.join()
    n_trials = sum(1 for _ in results.glob("*/*/tune/*/trial_*"))
    state_files = sum(1 for _ in results.glob("*/*/tune/*/trial_*/checkpoint_*/state.*"))
    return checkpoint_bytes(results), max(peak[0], checkpoint_bytes(results)), n_trials, state_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=None, help="run_all.py's --methods (default: the task's)")
    parser.add_argument("--keep", default="best,all", help="--keep-checkpoints values to measure, comma-separated")
    parser.add_argument("--pause-disk-gb", default=None, help="run_all.py's --pause-disk-gb")
    parser.add_argument("--num-samples", default=None, help="run_all.py's --num-samples")
    args = parser.parse_args()
    extra = [*(["--methods", args.methods] if args.methods else []),
             *(["--num-samples", args.num_samples] if args.num_samples else []),
             *(["--pause-disk-gb", args.pause_disk_gb] if args.pause_disk_gb else [])]
    from transformers import AutoModelForSequenceClassification

    from tests.text_fixtures import write_imdb_folder, write_tiny_model

    work = Path(tempfile.mkdtemp(prefix="checkpoint_disk-"))
    fixtures = {"data": str(write_imdb_folder(work / "imdb")), "model": str(write_tiny_model(work / "model"))}
    model = AutoModelForSequenceClassification.from_pretrained(fixtures["model"], num_labels=2)
    weights = sum(t.numel() * 4 for t in model.state_dict().values())  # fp32 bytes
    print(f"model_fp32_bytes={weights}")
    for keep in args.keep.split(","):
        left, peak, n_trials, state_files = run(keep, fixtures, work, extra)
        print(f"keep={keep} trials={n_trials} checkpoint_bytes_left={left} left_x_model={left / weights:.2f} "
              f"peak_x_model={peak / weights:.2f} state_files_left={state_files}")


if __name__ == "__main__":
    main()
