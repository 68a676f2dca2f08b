"""CPU cost of the resource monitor: the share of one core it takes at a 1-second interval.

Starts a local Ray (so there are worker processes to find and read), then times ``--samples``
calls of ``ResourceMonitor.sample()`` in CPU seconds of this process; the cost at interval
``--interval`` is CPU seconds per sample / interval. With a GPU pinned, each sample also runs
nvidia-smi through GPUtil, which costs more (measure it on that machine with --gpu-id).

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

    from experiments.monitor import ResourceMonitor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.get([ray.remote(lambda: 1).remote() for _ in range(4)])  # make sure workers exist
    monitor = ResourceMonitor("bench", args.interval, gpu_id=args.gpu_id)
    monitor.sample()  # first scan of all processes
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(args.samples):
        row = monitor.sample()
    cpu = (time.process_time() - cpu_started) / args.samples
    wall = (time.perf_counter() - wall_started) / args.samples
    ray.shutdown()
    print(f"{row['n_processes']} processes read per sample; {wall * 1000:.2f} ms wall, {cpu * 1000:.2f} ms CPU per sample")
    print(f"monitor_core_share_at_{args.interval:g}s={cpu / args.interval:.4%}")


if __name__ == "__main__":
    main()
