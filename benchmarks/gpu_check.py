"""One prepared check of the GPU path on a machine with one CUDA GPU: ``python benchmarks/gpu_check.py``.

Runs on a bare GPU image (torch, torchvision, transformers, pandas, scikit-learn, nvidia-ml-py; no
Ray, hyperopt, bayes_opt or datasets, no network), data and models built in memory (synthetic images
and token ids, DistilBERT-base from ``DistilBertConfig()`` with random weights). It prints one
``key=value`` line per figure, ``key=skipped: <why>`` for what it cannot do there, and for each part
``budget_<part>=<used> of <allowed> s``. Every part (benchmarks/gpu_parts.py, gpu_memory.py) runs in a process of
its own under its budget, so one that fails or hangs prints ``<part>=error: ...`` or
``<part>=timeout ...`` and the next one runs; the budgets add up to under 6 minutes. This process
never touches CUDA: the card's memory is the parts' alone. The parts, most needed first:

- ``card``: the card, the precision our rule picks and whether bf16 is native, a CUDA context's size
  (NVML's count for the process less the allocator's), whether NVIDIA MPS runs;
- ``imdb_packing``: 1 and 4 spawned processes train the real IMDB TrainingRun (DistilBERT-base,
  batch 32 x 256 tokens) over one common window: aggregate samples/s, each one's peak memory and
  context, and whether the default ``--gpus-per-trial 0.25`` holds a trial on a 24 GB card;
- ``cifar_packing``: 1, 2 and 4 processes train the real CIFAR-10 ResNet-18 TrainingRun at batch 128
  and at the space's smallest, 32: aggregate images/s, the card's utilization (NVML), peaks;
- ``memory_probe``: ``--gpus-per-trial auto``'s probe for each CIFAR-10 batch size and IMDB's
  smallest and largest class, alone in a fresh process: MiB, share, how many fit;
- ``oom``: the allocator held to 1% of the card raises torch's OutOfMemoryError while the card has
  room, and a real training step past it does too;
- ``fp16``: the fp16 + GradScaler path of pre-Ampere cards, forced on: finite losses, the scale,
  the time per epoch against the card's own precision;
- ``imdb_ratio`` / ``cifar_ratio``: our epoch against the plain loops of benchmarks/imdb_throughput.py
  and cifar10_throughput.py on the card (ABBA rounds);
- ``checkpoint``: a checkpoint saved and restored on the card through the real trainable; each
  trial's own peak in a reused worker;
- ``mps``: packing at batch 32 again under NVIDIA MPS, where its daemon starts without root.

With Ray installed (a user's machine) it then checks Ray's GPU assignment and runs a CIFAR-10 and an
IMDB smoke run through run_all.py (benchmarks/gpu_check_ray.py; not budgeted).

``--rehearse-on-cpu`` runs the parts that do not need CUDA on the CPU with tiny sizes
(tests/test_gpu_check.py does, with Ray, hyperopt, bayes_opt and datasets unimportable and one
spawned trial made to fail), so the script cannot rot between GPU machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The bare image, simulated: GPU_CHECK_WITHOUT=ray,hyperopt makes those imports fail here and in
# every process the check starts (each imports this file again).
for _name in filter(None, os.environ.get("GPU_CHECK_WITHOUT", "").split(",")):
    sys.modules[_name] = None

import _common  # noqa: E402,F401  (puts the repository on sys.path)
from gpu_memory import part_fp16, part_memory_probe, part_oom  # noqa: E402  (neither imports torch here)
from gpu_parts import (mps_environment, part_card, part_checkpoint, part_cifar_packing, part_cifar_ratio,  # noqa: E402
                       part_imdb_packing, part_imdb_ratio, part_mps, say)

REHEARSAL_BUDGET_S = 45  # per part on the CPU, where the sizes are tiny
# name -> (the function, seconds it may take on a card, whether it needs one). In the order of what
# a short device lease most needs: the card, IMDB's memory, packing, the probe; the whole under 6 minutes.
PARTS = {
    "card": (part_card, 15, True),
    "imdb_packing": (part_imdb_packing, 60, False),
    "cifar_packing": (part_cifar_packing, 65, False),
    "memory_probe": (part_memory_probe, 55, True),
    "oom": (part_oom, 15, True),
    "fp16": (part_fp16, 25, True),
    "imdb_ratio": (part_imdb_ratio, 30, False),
    "cifar_ratio": (part_cifar_ratio, 25, False),
    "checkpoint": (part_checkpoint, 20, False),
    "mps": (part_mps, 35, True),
}


def run_part(name: str, budget: float, args, gpu_env: dict) -> bool:
    """``gpu_check.py --part name`` in a process group of its own, killed whole at ``budget``;
    its lines, then its error or timeout, then the time it took. Whether it succeeded."""
    command = [sys.executable, __file__, "--part", name, "--trials", args.trials, "--work", args.work,
               "--budget", str(budget)] + (["--rehearse-on-cpu"] if args.rehearse_on_cpu else [])
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, **gpu_env}, start_new_session=True)
        try:
            code = child.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # its spawned trials too
            child.wait()
            code = None
        out.seek(0)
        err.seek(0)
        sys.stdout.write(out.read())
        last = next((line for line in reversed(err.read().splitlines()) if line.strip()), "no message")
    used = time.perf_counter() - started
    if code is None:
        say(name, f"timeout: killed at its budget of {budget:g} s (the lines above are what it printed)")
    elif code != 0:
        say(name, f"error (exit {code}): {last.strip()[:300]}")
    say(f"budget_{name}", f"{used:.0f} of {budget:g} s")
    sys.stdout.flush()
    return code == 0


def stop_mps(work: Path) -> None:
    """The MPS daemon the ``mps`` part started, stopped even where the part was killed at its budget."""
    env = mps_environment(work)
    if Path(env["CUDA_MPS_PIPE_DIRECTORY"]).is_dir() and shutil.which("nvidia-cuda-mps-control"):
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", capture_output=True, text=True, timeout=10,
                       env={**os.environ, **env})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-id", type=int, default=0, help="the visible GPU to check (default 0)")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="without a GPU, run the parts that need no CUDA on the CPU with tiny sizes (the tests do)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray parts even where Ray is installed")
    parser.add_argument("--trials", default="1,2,4", help="processes packed on the card per point (default 1,2,4; "
                                                          "IMDB and MPS use the first and the last)")
    parser.add_argument("--only", default=None, help="comma-separated parts to run (default: all)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one part, in a process of its own
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        return run_one(args)
    started = time.perf_counter()
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # is_available() through NVML: no CUDA context here
    import torch

    from experiments.gpus import GpuProbeError, pinned_environment, visible_gpus

    import trainables.breast_cancer  # noqa: F401  (every task imports without Ray)
    import trainables.cifar10  # noqa: F401
    import trainables.imdb  # noqa: F401

    try:
        import ray  # noqa: F401
        has_ray = True
    except ImportError:
        has_ray = False
    say("trainables_import", f"ok (Ray {'installed' if has_ray else 'absent'})")
    try:
        gpus = visible_gpus()
    except GpuProbeError as exc:
        gpus = []
        say("nvml", f"error: {exc}")
    gpu = gpus[args.gpu_id] if args.gpu_id < len(gpus) else None
    on_gpu = torch.cuda.is_available() and gpu is not None
    say("device", f"{gpu.name} ({gpu.memory_total_mb:.0f} MiB), torch {torch.__version__} CUDA {torch.version.cuda}"
        if on_gpu else f"no GPU (NVML lists {len(gpus)}, torch.cuda.is_available()={torch.cuda.is_available()}); "
                       f"torch {torch.__version__}")
    # the parts see the chosen card as device 0 with the allocator a real run's workers have
    gpu_env = pinned_environment(gpu, os.environ) if on_gpu else {"CUDA_VISIBLE_DEVICES": ""}
    wanted = args.only.split(",") if args.only else list(PARTS)
    unknown = sorted(set(wanted) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; the parts: {', '.join(PARTS)}")
    budgets = {name: (PARTS[name][1] if on_gpu else REHEARSAL_BUDGET_S) for name in wanted}
    say("budget", f"{sum(budgets[n] for n in wanted if on_gpu or not PARTS[n][2]):g} s at most for "
                  f"{', '.join(wanted)}" + ("" if on_gpu else " (CPU: the parts that need CUDA are skipped)"))
    args.work = tempfile.mkdtemp(prefix="gpu_check-")
    failed = []
    for name in wanted:
        if not on_gpu and (PARTS[name][2] or not args.rehearse_on_cpu):
            say(name, "skipped: no GPU")
        elif not run_part(name, budgets[name], args, gpu_env):
            failed.append(name)
    stop_mps(Path(args.work))
    if args.no_ray or not has_ray:
        say("ray_checks", "skipped: " + ("--no-ray" if args.no_ray else "Ray is not installed (the bare GPU image); "
                                         "CI covers Ray's placement with a declared GPU (tests/test_gpu_ray.py)"))
    else:
        from gpu_check_ray import run_ray_checks

        run_ray_checks(gpu if on_gpu else None, Path(args.work))
    say("gpu_check_seconds", f"{time.perf_counter() - started:.0f}")
    say("failed_parts", ", ".join(failed) or "none")
    return 1 if failed else 0


def run_one(args) -> int:
    """The body of one part, in its own process (run_part starts it)."""
    import torch

    from experiments.gpus import visible_gpus
    from gpu_parts import Context
    from gpu_trials import INJECT

    if args.part in INJECT:
        raise RuntimeError(f"injected failure of the part {args.part} (GPU_CHECK_INJECT)")
    on_gpu = not args.rehearse_on_cpu and torch.cuda.is_available()
    counts = tuple(int(n) for n in args.trials.split(","))
    ctx = Context(on_gpu, visible_gpus()[0] if on_gpu else None, counts, Path(args.work), args.budget)
    PARTS[args.part][0](ctx)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    sys.exit(main())
