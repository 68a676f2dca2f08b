"""A resource sampler in the driver: GPU utilization and memory of the pinned GPU (NVML),
CPU percent and resident memory of the driver plus its own Ray instance's workers (psutil), every
``interval_s`` seconds, tagged with the method running. With no GPU the GPU fields are None
(empty in resources.csv), never zero-filled guesses.

It is a daemon thread that stops on ``stop()`` (or leaving its ``with`` block, Ctrl-C
included); a sample costs a few milliseconds (psutil reads /proc; new processes are looked at
once, then their ``Process`` objects are kept).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from experiments.gpus import Gpu, GpuSampler


def is_ray_worker(process) -> bool:
    # Ray names its worker processes "ray::<what they run>" (ray::IDLE, ray::ImdbTrainable.train).
    try:
        return process.name().startswith("ray::") or "default_worker.py" in " ".join(process.cmdline())
    except Exception:  # the process ended or is not ours to read
        return False


class ProcessGroup:
    """CPU percent and resident memory of a changing set of processes. ``members()`` lists
    them now; a new one is primed once (a process's first cpu_percent reading is meaningless)
    and its Process object kept, so a sample reads /proc only."""

    def __init__(self, members):
        import psutil

        self._members, self._psutil = members, psutil
        self._known: dict[int, Any] = {}

    def measure(self) -> tuple[float, float, int]:
        """(CPU percent summed, resident bytes summed, processes read)."""
        current = {p.pid: p for p in self._members()}
        for pid, process in current.items():
            if pid not in self._known:
                try:
                    process.cpu_percent(None)
                except self._psutil.Error:
                    continue
                self._known[pid] = process
        for pid in list(self._known):
            if pid not in current:
                del self._known[pid]
        cpu, rss, alive = 0.0, 0.0, 0
        for process in self._known.values():
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
                alive += 1
            except self._psutil.Error:
                continue
        return cpu, rss, alive


class ResourceMonitor:
    def __init__(self, task: str, interval_s: float = 1.0, gpu: Gpu | None = None, writer=None, nvml=None,
                 origin: float | None = None, samples: list[dict] | None = None):
        """``origin``: the time.time() that ``wall_seconds`` counts from (a resumed run passes
        its first start, so its samples continue the timeline); None: when ``start()`` is
        called. ``samples``: earlier samples to keep in front of the new ones (a resumed run's)."""
        import psutil

        if interval_s <= 0:
            raise ValueError(f"monitor interval must be positive, got {interval_s}")
        self.task, self.interval_s, self.gpu, self.writer = task, interval_s, gpu, writer
        self._nvml = nvml  # pynvml (a fake in tests, standing for a card); None: the real one
        self._gpu_sampler: GpuSampler | None = None  # opened with the first GPU sample
        self.gpu_error: str | None = None  # why NVML could not open the card (then no GPU columns)
        self._psutil = psutil
        self._driver = psutil.Process(os.getpid())
        self._workers: dict[int, Any] = {}  # pid -> psutil.Process of a Ray worker
        self._seen: set[int] = set()
        self._last_pids: set[int] = set()  # the machine's pids at the last walk of the driver's descendants
        self._group = ProcessGroup(self._members)
        self.node = _local_node()
        self.method: dict | None = None  # {"searcher", "scheduler", "seed"} while a method runs
        self.samples: list[dict] = list(samples or [])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lowres-tune-monitor", daemon=True)
        self._origin = origin
        self._started = origin if origin is not None else time.time()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> "ResourceMonitor":
        if self._origin is None:
            self._started = time.time()
        self._group.measure()  # primes every process: the first reading of one is meaningless
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self.interval_s + 5)
        if self._gpu_sampler is not None:
            self._gpu_sampler.close()
            self._gpu_sampler = None
        if self.writer is not None:
            self.writer.flush()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_method(self, searcher: str | None, scheduler: str | None = None, seed: int | None = None) -> None:
        with self._lock:
            self.method = None if searcher is None else {"searcher": searcher, "scheduler": scheduler, "seed": seed}

    def rows(self, searcher=None, scheduler=None, seed=None) -> list[dict]:
        """The samples so far; those of one method where it is named."""
        with self._lock:
            rows = list(self.samples)
        if searcher is None:
            return rows
        return [r for r in rows if (r["searcher"], r["scheduler"], r["seed"]) == (searcher, scheduler, seed)]

    # --- sampling -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a sampler must never take the run down
                continue

    def _members(self) -> list:
        """The driver and the Ray processes of this run's own Ray instance: the driver's descendants
        (the raylet a run starts is the driver's child, its workers the raylet's). A second run on
        the same machine has its own Ray, whose workers are not ours (matching "ray::" names
        machine-wide counted them: 12-13 processes instead of 8). New processes are looked at once."""
        pids = set(self._psutil.pids())  # cheap (a folder listing); walking the process tree is not
        if pids == self._last_pids:
            return [self._driver, *(p for pid, p in self._workers.items() if pid in pids)]
        self._last_pids = pids
        workers, descendants = [], self._driver.children(recursive=True)
        self._seen &= {p.pid for p in descendants}  # a pid that ended may come back as a worker
        for process in descendants:
            known = self._workers.get(process.pid)
            if known is None:
                if process.pid in self._seen:  # looked at before: not a Ray worker
                    continue
                self._seen.add(process.pid)
                if not is_ray_worker(process):
                    continue
                known = self._workers[process.pid] = process
            workers.append(known)
        alive = {p.pid for p in workers}
        for pid in list(self._workers):
            if pid not in alive:
                del self._workers[pid]
        return [self._driver, *workers]

    def _gpu(self) -> tuple[float | None, float | None]:
        """Whole-card utilization (%) and used memory (MiB, every process on the card). Where NVML
        cannot open the card (its handle lookup fails, the library went away), the GPU columns stay
        empty, said once on stderr, and the CPU and memory rows go on: before, the failed setup
        raised inside every sample and each interval's whole row was lost."""
        if self.gpu is None or self.gpu_error is not None:
            return None, None
        if self._gpu_sampler is None:
            try:
                self._gpu_sampler = GpuSampler(self.gpu, self._nvml)
            except Exception as exc:  # NVMLError and kin; the monitor thread must not die of it
                self.gpu_error = f"{type(exc).__name__}: {exc}"
                print(f"resource monitor: GPU {self.gpu.index} cannot be read through NVML ({self.gpu_error}); its "
                      "utilization and memory columns stay empty, CPU and memory are still sampled", file=sys.stderr)
                return None, None
        return self._gpu_sampler.sample()

    def sample(self) -> dict:
        cpu, rss, alive = self._group.measure()
        gpu_util, gpu_mem = self._gpu()
        return self._record([{"node": self.node, "gpu": self.gpu.index if self.gpu else None, "gpu_util": gpu_util,
                              "gpu_mem_mb": gpu_mem, "cpu_percent": cpu, "rss_mb": rss / 2**20, "n_processes": alive}])

    def _record(self, measured: list[dict]) -> dict:
        """Stamp rows with the time and the method running, keep them, log them to TensorBoard."""
        now = time.time()
        with self._lock:
            method = self.method or {"searcher": None, "scheduler": None, "seed": None}
            rows = [{"time": now, "wall_seconds": now - self._started, "task": self.task, **method, **m}
                    for m in measured]
            self.samples.extend(rows)
            step = len(self.samples)  # continues after a resumed run's earlier samples
        if self.writer is not None:
            several = len({r["node"] for r in rows}) > 1
            for row in rows:
                prefix = f"resources/{str(row['node'])[:8]}" if several else "resources"
                suffix = f"_gpu{row['gpu']}" if several and row["gpu"] is not None else ""
                for name in ("cpu_percent", "rss_mb", "gpu_util", "gpu_mem_mb"):
                    if row[name] is not None:
                        self.writer.add_scalar(f"{prefix}/{name}{suffix}", row[name], global_step=step, walltime=now)
        return rows[0]


class ClusterMonitor(ResourceMonitor):
    """The monitor of a run on a Ray cluster: one ``NodeSampler`` actor per node, asked once
    per interval; each sample is a row per node (its Ray workers) and per GPU of the node,
    tagged with the node (the driver's own process is not counted here)."""

    def __init__(self, *args, **kwargs):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from experiments.node_sampler import NodeSampler

        super().__init__(*args, **kwargs)
        self._samplers = [NodeSampler.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"],
                                                                                                 soft=False)).remote()
                          for node in ray.nodes() if node.get("Alive")]

    def sample(self) -> dict:
        import ray

        measured = [row for rows in ray.get([s.sample.remote() for s in self._samplers], timeout=30) for row in rows]
        return self._record(measured)

    def stop(self) -> None:
        import ray

        super().stop()
        for sampler in self._samplers:
            ray.kill(sampler)


def _local_node() -> str | None:
    """This process's Ray node id (None where Ray is not started)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # an older Ray without it, or a driver not connected: untagged
        return None
