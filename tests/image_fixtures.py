"""A tiny CIFAR-10-shaped parquet folder in the hub's schema (``img``: datasets Image,
``label``: ClassLabel of the ten class names), made offline with the datasets library."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images_for(labels, seed: int) -> list:
    """32x32 RGB images whose mean colour depends on the class, with noise: learnable, not trivial."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for label in labels:
        base = np.array([(label * 25) % 256, (label * 67) % 256, (255 - label * 25) % 256], dtype=np.float64)
        pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def write_cifar_folder(folder: Path, per_class_train: int = 10, per_class_test: int = 4, seed: int = 0,
                       label_offset: int = 0) -> Path:
    import datasets

    datasets.disable_progress_bars()
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = [c for c in range(10) for _ in range(per_class)]
        table = datasets.Dataset.from_dict({"img": images_for(labels, seed), "label": labels}, features=features)
        table.to_parquet(str(folder / f"{split}.parquet"))
    return folder
