"""CPU cost of the resource monitor: the share of one core it takes at a 1-second interval.

Starts a local Ray (so there are worker processes to find and read), then times ``--samples``
calls of ``ResourceMonitor.sample()`` in CPU seconds of this process; the cost at interval
``--interval`` is CPU seconds per sample / interval. With a GPU (the first visible one, or
--gpu-id), each sample also reads NVML in this process (no child process: the CPU time
measured here is the whole cost), and the GPU read alone is timed separately.

    python benchmarks/monitor_overhead.py --samples 100
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts the repository on sys.path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--gpu-id", type=int, default=None)
    args = parser.parse_args(argv)
    import ray

    from experiments.gpus import GpuSampler, visible_gpus
    from experiments.monitor import ResourceMonitor

    gpus = visible_gpus()
    gpu = gpus[args.gpu_id or 0] if gpus else None
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.get([ray.remote(lambda: 1).remote() for _ in range(4)])  # make sure workers exist
    monitor = ResourceMonitor("bench", args.interval, gpu=gpu)
    monitor.sample()  # first scan of all processes
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(args.samples):
        row = monitor.sample()
    cpu = (time.process_time() - cpu_started) / args.samples
    wall = (time.perf_counter() - wall_started) / args.samples
    ray.shutdown()
    print(f"{row['n_processes']} processes read per sample; {wall * 1000:.2f} ms wall, {cpu * 1000:.2f} ms CPU per sample")
    print(f"monitor_core_share_at_{args.interval:g}s={cpu / args.interval:.4%}")
    if gpu is None:
        print("gpu_sample=no GPU (NVML lists none): the GPU read was not measured")
        return
    sampler = GpuSampler(gpu)
    started = time.perf_counter()
    for _ in range(args.samples):
        sampler.sample()
    sampler.close()
    print(f"gpu_sample_ms={(time.perf_counter() - started) / args.samples * 1000:.3f} ({gpu.name}, NVML in-process)")


if __name__ == "__main__":
    main()
