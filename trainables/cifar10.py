"""CIFAR-10 (10 classes, 32x32 colour images) with torchvision's ResNet-18 or EfficientNet-B0.

Data: the hub's ``uoft-cs/cifar10``, or ``--data-dir`` with ``train.parquet`` and
``test.parquet`` (``img``: the datasets Image feature, ``label``: 0..9). The images are
decoded once into a uint8 array and cached on disk (``--cache-dir``), keyed by the source's
fingerprint, so a changed source is never served stale; a cached load takes well under a
second. A seeded, stratified validation split (``VAL_SIZE``, a tenth) is carved from train
(45,000 / 5,000); ``--subset N`` trains on N stratified images (and validates and tests on N).

The whole data set lives as one uint8 tensor on the trial's device; random crop (padding 4),
horizontal flip and normalization are batched tensor operations there, not per-sample PIL
transforms in DataLoader workers: when four trials share one GPU there are few CPU cores per
trial. On CUDA the model runs channels_last under bf16 autocast (fp16 with a gradient scaler on cards
older than Ampere; core.rules.training_precision).

Models (``--model``): ``resnet18`` with a 3x3 stride-1 stem and no max-pool (the usual
32x32 adaptation), dropout at ``dropout_rate`` before the classifier; or ``efficientnet_b0``
with a stride-1 stem and its classifier dropout at ``dropout_rate``. Both from scratch.
AdamW at ``learning_rate`` (Adam-scale values), weight decay 5e-4.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainables import data as data_lib
from core.task import TaskSpec
from trainables.base import EpochTrainable, MixedPrecision, TrainingRun

HUB_DATASET = "uoft-cs/cifar10"
NUM_CLASSES = 10
VAL_SIZE = 0.1  # share of the training images carved out for validation (5,000 of 50,000)
MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training images
STD = (0.2470, 0.2435, 0.2616)
CROP_PADDING = 4  # pixels of zero padding before the random 32x32 crop
WEIGHT_DECAY = 5e-4
EVAL_BATCH_SIZE = 500
MODELS = ("resnet18", "efficientnet_b0")

# The grid (docs/DESIGN.md): 3 x 3 x 3 x 2 = 54 configurations.
SPACE = {
    "learning_rate": (1e-3, 1e-4, 1e-5),  # AdamW step size
    "batch_size": (32, 64, 128),  # images per step
    "num_epochs": (10, 20, 30),  # epochs; also ASHA's resource
    "dropout_rate": (0.2, 0.5),  # before the classifier
}
SMOKE_SPACE = {"learning_rate": (1e-3,), "batch_size": (32,), "num_epochs": (1, 2), "dropout_rate": (0.2, 0.5)}

OPTIONS = {
    "data_dir": None,  # None: the hub's uoft-cs/cifar10
    "model": "resnet18",  # or efficientnet_b0
    "subset": None,  # N stratified training images (and N of validation and test)
    "eval_subset": None,  # validation and test images where they should differ from subset
    "cache_dir": None,  # None: ~/.cache/lowres-tune
}


def check_options(options: dict, task: TaskSpec) -> None:
    if options["model"] not in MODELS:
        raise ValueError(f"--model {options['model']!r} is not a CIFAR-10 model; allowed: {', '.join(MODELS)}")
    if options["data_dir"]:
        data_lib.check_parquet_folder(options["data_dir"], {"img": "datasets Image", "label": "int 0..9"},
                                      NUM_CLASSES)
    elif not data_lib.hub_reachable():
        raise ValueError(f"no network to load {HUB_DATASET} from the Hugging Face hub: pass --data-dir with a "
                         "folder holding train.parquet and test.parquet (img, label)")


def decode_images(column) -> np.ndarray:
    """(N, 32, 32, 3) uint8 from a datasets Image column read undecoded ({bytes, path})."""
    from io import BytesIO

    from PIL import Image

    images = np.empty((len(column), 32, 32, 3), dtype=np.uint8)
    for i, item in enumerate(column):
        source = BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
        with Image.open(source) as image:
            images[i] = np.asarray(image.convert("RGB").resize((32, 32)) if image.size != (32, 32)
                                   else image.convert("RGB"))
    return images


def cache_folder(data_dir: str | None, cache_dir: str | None) -> Path:
    key = data_lib.cache_key("cifar10-decoded", data_lib.source_fingerprint(HUB_DATASET, data_dir))
    return Path(cache_dir or data_lib.default_cache_dir()) / "cifar10" / key


def load_decoded(data_dir: str | None, cache_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (images uint8 (N, 32, 32, 3), labels int64)}, decoded once and cached."""
    folder = cache_folder(data_dir, cache_dir)
    if not (folder / "complete").exists():
        import datasets

        splits = data_lib.load_splits(HUB_DATASET, data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for split, dataset in splits.items():
            undecoded = dataset.cast_column("img", datasets.Image(decode=False))
            for name, array in (("images", decode_images(undecoded["img"])),
                                ("labels", np.asarray(list(undecoded["label"]), dtype=np.int64))):
                tmp = folder / f"{split}_{name}.{os.getpid()}.tmp.npy"
                np.save(tmp, array)
                os.replace(tmp, folder / f"{split}_{name}.npy")
        (folder / "complete").touch()  # written last: a half-written cache is never read
    return {split: (np.load(folder / f"{split}_images.npy"), np.load(folder / f"{split}_labels.npy"))
            for split in ("train", "test")}


@lru_cache(maxsize=1)
def _load(data_dir, cache_dir, subset, eval_subset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    decoded = load_decoded(data_dir, cache_dir)
    chosen = data_lib.split_indices(decoded["train"][1], decoded["test"][1], VAL_SIZE, subset, eval_subset)
    return {split: (decoded[source][0][idx], decoded[source][1][idx]) for split, (source, idx) in chosen.items()}


def load_data(config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images uint8 (N, 32, 32, 3), labels)} for train, val and test."""
    return _load(config.get("data_dir"), config.get("cache_dir"), config.get("subset"), config.get("eval_subset"))


def build_model(name: str, dropout_rate: float) -> nn.Module:
    import torchvision

    if name == "resnet18":
        model = torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)  # 32x32 stem
        model.maxpool = nn.Identity()
        model.fc = nn.Sequential(nn.Dropout(dropout_rate), nn.Linear(model.fc.in_features, NUM_CLASSES))
        return model
    if name == "efficientnet_b0":
        model = torchvision.models.efficientnet_b0(weights=None, num_classes=NUM_CLASSES, dropout=dropout_rate)
        stem = model.features[0][0]
        model.features[0][0] = nn.Conv2d(3, stem.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        return model
    raise ValueError(f"unknown CIFAR-10 model {name!r}; allowed: {', '.join(MODELS)}")


def draw_augmentation(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An epoch's random crops and flips for ``n`` images, drawn at once on the generator's
    device: (2, n) crop offsets and (n,) flips. Drawing per batch on a CPU generator and
    copying to the GPU synchronized the host twice per batch."""
    shifts = torch.randint(0, 2 * CROP_PADDING + 1, (2, n), generator=generator, device=generator.device)
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    return shifts, flip


def augment(images: torch.Tensor, shifts: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Random 32x32 crop of the zero-padded image and a random horizontal flip, per image,
    as batched tensor indexing on the images' device. ``images``: (B, C, H, W), any dtype;
    ``shifts``, ``flip``: this batch's part of ``draw_augmentation``."""
    b, c, h, w = images.shape
    padded = nn.functional.pad(images, (CROP_PADDING,) * 4)
    rows = (torch.arange(h, device=images.device)[None, :] + shifts[0][:, None])  # (B, H)
    cols = (torch.arange(w, device=images.device)[None, :] + shifts[1][:, None])  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class Cifar10Run(TrainingRun):
    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        # uint8 NCHW tensors on the device: 150 MB for the full training set
        self.images = {split: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
                       for split, (x, _) in data.items()}
        self.labels = {split: torch.from_numpy(y).to(device) for split, (_, y) in data.items()}
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
        self.cuda = device.type == "cuda"
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.model = build_model(config.get("model", "resnet18"), float(config["dropout_rate"]))
        self.model = self.model.to(device, memory_format=self.memory_format)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed 32x32 shapes: let cuDNN pick its fastest kernels
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(config["learning_rate"]),
                                           weight_decay=WEIGHT_DECAY, fused=self.cuda or None)
        self.batch_size = int(config["batch_size"])
        self.n_train = len(self.labels["train"])
        # on the device: an epoch's order, crops and flips are drawn there, with no host sync
        self.generator = torch.Generator(device=device).manual_seed(int(config.get("seed", 0)))
        self.precision = MixedPrecision(device)  # bf16 where native, else fp16 with a scaler; none on the CPU
        self.autocast = self.precision.autocast

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.float() - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def train_epoch(self) -> float:
        self.model.train()
        order = torch.randperm(self.n_train, generator=self.generator, device=self.device)
        shifts, flip = draw_augmentation(self.n_train, self.generator)
        total = torch.zeros((), device=self.device)
        for start in range(0, self.n_train, self.batch_size):
            end = start + self.batch_size
            idx = order[start:end]
            inputs = self._normalize(augment(self.images["train"][idx], shifts[:, start:end], flip[start:end]))
            with self.autocast:
                logits = self.model(inputs)
            loss = nn.functional.cross_entropy(logits.float(), self.labels["train"][idx])
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.step(loss, self.optimizer)
            total += loss.detach() * len(idx)
        return float(total) / self.n_train

    @torch.no_grad()
    def predict(self, split):
        self.model.eval()
        images, labels = self.images[split], self.labels[split]
        proba, loss_sum = [], 0.0
        for start in range(0, len(labels), EVAL_BATCH_SIZE):
            with self.autocast:
                logits = self.model(self._normalize(images[start:start + EVAL_BATCH_SIZE])).float()
            loss_sum += float(nn.functional.cross_entropy(logits, labels[start:start + EVAL_BATCH_SIZE],
                                                          reduction="sum"))
            proba.append(torch.softmax(logits, dim=1).cpu())
        return labels.cpu().numpy(), torch.cat(proba).numpy(), loss_sum / len(labels)

    def release(self):
        self.images = self.labels = None
        super().release()


TASK = TaskSpec(
    name="cifar10",
    num_classes=NUM_CLASSES,
    trainable="trainables.cifar10:Cifar10Trainable",
    space=SPACE,
    grace_period=3,  # epochs, declared with the space (not measured): rungs at 3 and 9 of max 30, two cuts
    reduction_factor=3,
    cpus_per_trial=1.0,
    gpus_per_trial=0.25,  # four ResNet-18 trials share one GPU
    memory_params=("batch_size",),  # the model is an option: one per run
    probe_options={"subset": 384, "eval_subset": 100},  # three batches of the largest batch size
    smoke_space=SMOKE_SPACE,
    smoke_grace_period=1,
    smoke_num_samples=2,
    smoke_options={"subset": 200},  # a CPU-sized look: 200 images of each split
    options=OPTIONS,
    check_options=check_options,
    prepare=lambda options, space: load_decoded(options.get("data_dir"), options.get("cache_dir")),
    description="CIFAR-10, ResNet-18 (32x32 stem) or EfficientNet-B0 from torchvision",
)


class Cifar10Trainable(EpochTrainable):
    task = TASK
    run_cls = Cifar10Run
    load_data = staticmethod(load_data)
    data_keys = ("data_dir", "cache_dir", "subset", "eval_subset")
