"""The resource monitor's probe on one node of a Ray cluster (``--ray-address``): an actor
pinned to the node, reading that node's Ray workers (the children of its raylet) with psutil
and its GPUs with NVML. The driver's monitor asks every node's probe once per interval."""

from __future__ import annotations

import os

import ray

from experiments.monitor import ProcessGroup, is_ray_worker


@ray.remote(num_cpus=0)
class NodeSampler:
    def __init__(self):
        import psutil

        from experiments.gpus import GpuProbeError, GpuSampler, all_gpus

        self.node = ray.get_runtime_context().get_node_id()
        raylet = psutil.Process(os.getppid())  # a Ray worker's parent is its node's raylet
        own = os.getpid()
        self._group = ProcessGroup(lambda: [p for p in raylet.children(recursive=True)
                                            if p.pid != own and is_ray_worker(p)])
        try:  # every card of the node: a 0-GPU actor's CUDA_VISIBLE_DEVICES says nothing about them
            self._gpus = [(gpu, GpuSampler(gpu)) for gpu in all_gpus() if not gpu.is_mig]
        except GpuProbeError:
            self._gpus = []

    def sample(self) -> list[dict]:
        """One row for the node's workers, and one per GPU of the node."""
        cpu, rss, alive = self._group.measure()
        rows = [{"node": self.node, "gpu": None, "gpu_util": None, "gpu_mem_mb": None, "cpu_percent": cpu,
                 "rss_mb": rss / 2**20, "n_processes": alive}]
        for gpu, sampler in self._gpus:
            util, memory = sampler.sample()
            rows.append({"node": self.node, "gpu": gpu.index, "gpu_util": util, "gpu_mem_mb": memory,
                         "cpu_percent": None, "rss_mb": None, "n_processes": None})
        return rows
