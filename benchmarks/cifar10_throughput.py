"""Training throughput of the CIFAR-10 task: our Trainable's ``step()`` against a plain loop.

The same model (ResNet-18, 32x32 stem), batch size, device, images (real CIFAR-10 from
../shared/data/cifar10) and work per step (random crop with padding 4, horizontal flip,
normalization, AdamW), in one process, ours and plain paired in ``--rounds`` rounds (ABBA order)
after a shared warm-up; the ratio reported is the median of the rounds' ratios, with their
range (single runs on a shared 2-core machine vary by +-10%, so 3 rounds could not tell 0.95
from 0.87). For ours, ``Cifar10Run.train_epoch`` (the training part of a trial's ``step()``). The
plain loop is what a user would write by hand: a permutation, slices, torchvision-style crop
and flip on the batch tensor, forward, backward, step. Both run on the same device
(``--device``: CUDA where there is one) in the same precision (bf16 autocast on CUDA, fp32 on
the CPU), so the ratio compares our code, not two devices.

    python benchmarks/cifar10_throughput.py --images 384 --batch-size 64 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import epoch_throughput, paired_rounds, shared_data, synchronize


def plain_loop(images, labels, batch_size: int, lr: float, dropout: float, seed: int, device) -> float:
    """Training images per second of a hand-written loop."""
    import torch
    from torch import nn

    from trainables.cifar10 import MEAN, STD, build_model

    torch.manual_seed(seed)
    model = build_model("resnet18", dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x = ((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)).to(device)
    y = torch.from_numpy(labels).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    synchronize(device)
    started = time.perf_counter()
    order = torch.randperm(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        batch = nn.functional.pad(x[idx], (4, 4, 4, 4))
        i, j = torch.randint(0, 9, (2,)).tolist()  # one crop per batch: the cheapest a hand loop gets
        batch = batch[:, :, i:i + 32, j:j + 32]
        if torch.rand(()) < 0.5:
            batch = batch.flip(3)
        with autocast:
            logits = model(batch)
        loss = nn.functional.cross_entropy(logits.float(), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return len(y) / (time.perf_counter() - started)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="training images per epoch (default 384)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8, help="paired measurements, in ABBA order (default 8)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda where available)")
    args = parser.parse_args(argv)
    data_dir = shared_data("cifar10")

    import torch

    from trainables.cifar10 import Cifar10Run, load_data

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = {"data_dir": str(data_dir), "cache_dir": None, "model": "resnet18", "subset": args.images,
              "eval_subset": 100, "learning_rate": 1e-3, "batch_size": args.batch_size, "num_epochs": 1,
              "dropout_rate": 0.2, "seed": 0}
    data = load_data(config)  # decode (or load the cache) before any timing
    images, labels = data["train"]
    plain_loop(images[:2 * args.batch_size], labels[:2 * args.batch_size], args.batch_size, 1e-3, 0.2, 0, device)
    ours_runs, plain_runs = paired_rounds(lambda: epoch_throughput(Cifar10Run, config, data, device),
                                          lambda: plain_loop(images, labels, args.batch_size, 1e-3, 0.2, 0, device),
                                          args.rounds)
    ratios = [o / p for o, p in zip(ours_runs, plain_runs)]
    ours, plain = statistics.median(ours_runs), statistics.median(plain_runs)
    print(f"{args.images} real CIFAR-10 images, batch {args.batch_size}, ResNet-18, device {device} "
          f"({'bf16 autocast' if device.type == 'cuda' else 'fp32'}, both sides), "
          f"torch threads {torch.get_num_threads()}, {args.rounds} rounds")
    print("ours img/s:  " + " ".join(f"{v:.2f}" for v in ours_runs))
    print("plain img/s: " + " ".join(f"{v:.2f}" for v in plain_runs))
    print("ratio per round: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"ours_img_per_s={ours:.2f} plain_img_per_s={plain:.2f} ratio={statistics.median(ratios):.3f} "
          f"ratio_min={min(ratios):.3f} ratio_max={max(ratios):.3f} rounds={len(ratios)}")


if __name__ == "__main__":
    main()
