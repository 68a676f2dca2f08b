"""A resource sampler in the driver: GPU utilization and memory of the pinned GPU (NVML),
CPU percent and resident memory of the driver plus every Ray worker process (psutil), every
``interval_s`` seconds, tagged with the method running. With no GPU the GPU fields are None
(empty in resources.csv), never zero-filled guesses.

It is a daemon thread that stops on ``stop()`` (or leaving its ``with`` block, Ctrl-C
included); a sample costs a few milliseconds (psutil reads /proc; new processes are looked at
once, then their ``Process`` objects are kept).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from experiments.gpus import Gpu, GpuSampler


def _is_ray_worker(process) -> bool:
    # Ray names its worker processes "ray::<what they run>" (ray::IDLE, ray::ImdbTrainable.train).
    try:
        return process.name().startswith("ray::") or "default_worker.py" in " ".join(process.cmdline())
    except Exception:  # the process ended or is not ours to read
        return False


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
        self._psutil = psutil
        self._driver = psutil.Process(os.getpid())
        self._workers: dict[int, Any] = {}  # pid -> psutil.Process of a Ray worker
        self._seen: set[int] = set()
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
        self._driver.cpu_percent(None)  # the first reading of a process is meaningless: prime it
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

    def _refresh_workers(self) -> None:
        pids = set(self._psutil.pids())
        for pid in pids - self._seen:
            self._seen.add(pid)
            try:
                process = self._psutil.Process(pid)
            except self._psutil.Error:
                continue
            if _is_ray_worker(process):
                process.cpu_percent(None)  # prime
                self._workers[pid] = process
        for pid in list(self._workers):
            if pid not in pids:
                del self._workers[pid]
        self._seen &= pids

    def _gpu(self) -> tuple[float | None, float | None]:
        """Whole-card utilization (%) and used memory (MiB, every process on the card)."""
        if self.gpu is None:
            return None, None
        if self._gpu_sampler is None:
            self._gpu_sampler = GpuSampler(self.gpu, self._nvml)
        return self._gpu_sampler.sample()

    def sample(self) -> dict:
        self._refresh_workers()
        cpu, rss = 0.0, 0.0
        processes = [self._driver, *self._workers.values()]
        alive = 0
        for process in processes:
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
                alive += 1
            except self._psutil.Error:
                continue
        gpu_util, gpu_mem = self._gpu()
        now = time.time()
        with self._lock:
            method = self.method or {"searcher": None, "scheduler": None, "seed": None}
            row = {"time": now, "wall_seconds": now - self._started, "task": self.task, **method,
                   "gpu_util": gpu_util, "gpu_mem_mb": gpu_mem, "cpu_percent": cpu, "rss_mb": rss / 2**20,
                   "n_processes": alive}
            self.samples.append(row)
        if self.writer is not None:
            step = len(self.samples)  # continues after a resumed run's earlier samples
            for name in ("cpu_percent", "rss_mb", "gpu_util", "gpu_mem_mb"):
                if row[name] is not None:
                    self.writer.add_scalar(f"resources/{name}", row[name], global_step=step, walltime=now)
        return row
