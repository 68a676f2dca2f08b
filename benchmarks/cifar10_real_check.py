"""Real-data check of the CIFAR-10 task on this machine's CPU.

ResNet-18 (32x32 stem) trained from scratch through our Trainable on a 5,000-image stratified
subset of ../shared/data/cifar10, one epoch, batch 64, AdamW 1e-3, dropout 0.2; the
best-validation weights (1,000 validation images) are scored on 1,000 test images. Target:
test accuracy >= 0.30 (a plain loop here reached 0.364 at 23 images/s). Prints
``test_accuracy=<x>`` last, after the cached-load time of the decoded training set.

    python benchmarks/cifar10_real_check.py
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import shared_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training images (default 5000)")
    parser.add_argument("--eval-subset", type=int, default=1000, help="validation and test images (default 1000)")
    args = parser.parse_args(argv)
    data_dir = shared_data("cifar10")

    import ray.tune.trainable.trainable as ray_trainable

    from trainables.base import evaluate_checkpoint
    from trainables.cifar10 import Cifar10Trainable, load_decoded

    load_decoded(str(data_dir), None)  # decode once (or find the cache)
    started = time.perf_counter()
    decoded = load_decoded(str(data_dir), None)
    cached_load = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        ray_trainable.DEFAULT_STORAGE_PATH = tmp
        config = {"data_dir": str(data_dir), "cache_dir": None, "model": "resnet18", "subset": args.subset,
                  "eval_subset": args.eval_subset, "learning_rate": 1e-3, "batch_size": 64, "num_epochs": 1,
                  "dropout_rate": 0.2, "seed": 0}
        trainable = Cifar10Trainable(config=config)
        result = trainable.train()
        checkpoint = trainable.save().checkpoint
        test = evaluate_checkpoint(Cifar10Trainable, config, checkpoint.path, "test")
        trainable.stop()
    print(f"cached load of the decoded training set ({decoded['train'][0].shape[0]} images): {cached_load:.3f} s")
    print(f"epoch {result['epoch_seconds']:.1f} s (training at {result['samples_per_second']:.1f} images/s, "
          f"then validation); val_accuracy={result['val_accuracy']:.4f}")
    print(f"test_f1={test['f1']:.4f} test_auc={test['auc']:.4f}")
    print(f"test_accuracy={test['accuracy']:.4f}")


if __name__ == "__main__":
    main()
