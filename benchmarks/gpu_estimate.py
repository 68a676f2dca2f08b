"""Estimated wall time of ``python run_all.py --task imdb`` and ``--task cifar10`` on one GPU: ESTIMATES,
from counted FLOPs, a card's datasheet peak and an assumed range of how much of it the packed trials
reach, until a card measures them.

    python benchmarks/gpu_estimate.py                     # FLOPs-based, on any machine
    python benchmarks/gpu_estimate.py --from-check gpu.txt  # from gpu_check.py's measured throughput

What is counted, not assumed: each model's FLOPs per training sample (forward and backward) and per
evaluated sample (forward), by torch.utils.flop_counter on the real models (ResNet-18 as the task
builds it; DistilBERT-base from its config, random weights) at the task's shapes; the epochs each
default method trains (grid and FIFO methods exactly, ASHA's expected epochs for an ideal 1/eta
promotion); the reviews' mean length after truncation where ../shared/data/imdb is there (else the
maximum, an upper bound); each trial's model built on the CPU side, timed here. What is assumed: the cards' dense bf16 peaks (datasheets) and the fraction
of it reached (MFU) by four trials at 0.25 each, a range per model. Not counted: data loading and
tokenization once per run, Ray's per-trial start (benchmarks/overhead.py: about 0.1 s), checkpoints. ``--from-check`` replaces FLOPs/(peak x MFU) with the aggregate samples/s
gpu_check.py measured for 4 packed trials (IMDB at 32 x 256 tokens, padded: an upper bound for
dynamic padding; CIFAR-10 at batch 128).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (puts the repository on sys.path)

CARDS = {"H100 SXM 80 GB": 989e12, "24 GB card (L4, A10: ~121-125 TFLOPS)": 121e12}  # dense bf16, datasheets
MFU = {"imdb": (0.25, 0.45), "cifar10": (0.10, 0.30)}  # assumed: ResNet-18 at 32x32 leaves a big card idle
TRAIN = {"imdb": 22_500, "cifar10": 45_000}  # training samples per epoch (the tasks' 90% of train)
VAL = {"imdb": 2_500, "cifar10": 5_000}  # evaluated after every epoch


def default_methods(task) -> dict[str, float]:
    """Trial-epochs of each method of the default comparison (one seed)."""
    import itertools

    space = task.space
    epochs = space[task.epochs_param]
    others = math.prod(len(v) for k, v in space.items() if k != task.epochs_param)
    n = math.ceil(task.grid_size / 4)
    mean_fifo = sum(epochs) / len(epochs)
    milestones = [0]
    while milestones[-1] * task.reduction_factor < max(epochs) or milestones == [0]:
        milestones.append(task.grace_period if milestones == [0] else milestones[-1] * task.reduction_factor)
    milestones.append(max(epochs))

    def asha(e: int) -> float:  # segment i between rungs is reached by 1/eta**i of the trials
        return sum(max(0, min(e, hi) - lo) / task.reduction_factor ** i
                   for i, (lo, hi) in enumerate(itertools.pairwise(milestones)))

    mean_asha = sum(asha(e) for e in epochs) / len(epochs)
    return {"grid:fifo": others * sum(epochs), "random:fifo": n * mean_fifo, "random:asha": n * mean_asha,
            "hyperopt:asha": n * mean_asha, "bayesopt:asha": n * mean_asha, "recommended (bayesopt:fifo)": n * mean_fifo}


def flops(task_name: str, seq_len: float) -> tuple[float, float]:
    """FLOPs per training sample (forward + backward) and per evaluated sample (forward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if task_name == "cifar10":
        from trainables.cifar10 import build_model

        model, x = build_model("resnet18", 0.2), torch.randn(2, 3, 32, 32)
        run = lambda: model(x).sum()  # noqa: E731
        per = 2
    else:
        from transformers import DistilBertConfig, DistilBertForSequenceClassification

        model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))
        ids = torch.randint(1, 30000, (1, int(round(seq_len))))
        run = lambda: model(input_ids=ids).logits.sum()  # noqa: E731
        per = 1
    with FlopCounterMode(display=False) as forward:
        with torch.no_grad():
            run()
    with FlopCounterMode(display=False) as both:
        run().backward()
    return both.get_total_flops() / per, forward.get_total_flops() / per


def review_lengths():
    """Token counts of 2,000 real training reviews (BERT's uncased WordPiece, as DistilBERT's, special
    tokens included), untruncated: truncating at ``max_len`` keeps ``min(length, max_len)``. None where
    the reviews or the offline tokenizer are not here."""
    import pandas as pd
    from transformers import AutoTokenizer

    from _common import has_shared_data, minilm_dir, shared_data_dir

    if not has_shared_data("imdb") or minilm_dir() is None:
        return None
    texts = pd.read_parquet(shared_data_dir("imdb") / "train.parquet")["text"].sample(2000, random_state=0).tolist()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), model_max_length=10**6)
    return np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])


def mean_review_tokens(lengths, max_len: int) -> tuple[float, str]:
    """Mean review length after truncation at ``max_len``; ``max_len`` itself (an upper bound) without reviews."""
    if lengths is None:
        return float(max_len), "the maximum (no reviews here): an upper bound"
    return float(np.minimum(lengths, max_len).mean()), "measured on 2,000 real reviews"


def setup_seconds(task_name: str) -> float:
    """A trial's model built on the CPU side, measured here (the median of 3): what each trial pays
    before its first epoch besides Ray's start."""
    import statistics
    import tempfile
    import time

    import torch

    if task_name == "cifar10":
        from trainables.cifar10 import build_model

        make = lambda: build_model("resnet18", 0.2)  # noqa: E731
    else:
        from transformers import AutoModelForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = tempfile.mkdtemp()
        DistilBertForSequenceClassification(DistilBertConfig(num_labels=2)).save_pretrained(folder)
        make = lambda: AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).to(torch.float32)  # noqa: E731
    times = []
    for _ in range(3):
        started = time.perf_counter()
        make()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def from_check(path: str) -> dict[str, float]:
    text = Path(path).read_text()
    rates = {}
    for task, key in (("imdb", r"imdb_packing_4_samples_per_s"), ("cifar10", r"packing_b128_4_img_per_s")):
        found = re.search(rf"^{key}=([0-9.]+)", text, re.M)
        if found:
            rates[task] = float(found.group(1))
    return rates


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-check", help="gpu_check.py's output: its measured throughput replaces the FLOPs estimate")
    args = parser.parse_args(argv)
    from trainables import get_task

    measured = from_check(args.from_check) if args.from_check else {}
    print("ESTIMATES, not measurements: python run_all.py --task <task> (default methods, one seed, 4 trials at "
          "--gpus-per-trial 0.25)")
    for name in ("imdb", "cifar10"):
        task = get_task(name)
        methods = default_methods(task)
        epochs = sum(methods.values())
        if name == "imdb":  # the space's lengths, each half of the trials (the grid and uniform sampling)
            reviews = review_lengths()  # read and tokenized once for both lengths
            lengths = [mean_review_tokens(reviews, n) for n in task.space["max_seq_length"]]
            per = [flops(name, length) for length, _ in lengths]
            train_f, eval_f = (sum(p[0] for p in per) / len(per), sum(p[1] for p in per) / len(per))
            how = "; ".join(f"{length:.0f} tokens at max {n} ({where})"
                            for (length, where), n in zip(lengths, task.space["max_seq_length"]))
        else:
            train_f, eval_f = flops(name, 0)
            how = "32x32 images"
        total = epochs * (TRAIN[name] * train_f + VAL[name] * eval_f)
        trials = task.grid_size + 5 * math.ceil(task.grid_size / 4)
        setup = setup_seconds(name) * trials / 4  # four trials start side by side
        print(f"\n{name}: {epochs:.0f} trial-epochs ({', '.join(f'{m} {e:.0f}' for m, e in methods.items())}); "
              f"{train_f / 1e9:.2f} GFLOP per training sample, {eval_f / 1e9:.2f} per evaluated one ({how}); "
              f"{total / 1e15:.0f} PFLOP in all; {trials} trials, their models built on the CPU side in "
              f"{setup * 4 / trials:.2f} s each (measured here): {setup:.0f} s of wall time at 4 at once, included")
        if name in measured:
            train_equivalent = epochs * (TRAIN[name] + VAL[name] * eval_f / train_f)
            print(f"  measured by gpu_check ({measured[name]:.0f} samples/s, 4 trials): "
                  f"{hours(train_equivalent / measured[name] + setup)}")
        for card, peak in CARDS.items():
            low, high = MFU[name]
            print(f"  {card}: {hours(total / (peak * high) + setup)} to {hours(total / (peak * low) + setup)} "
                  f"(MFU {low:.0%}-{high:.0%} assumed)")


if __name__ == "__main__":
    main()
