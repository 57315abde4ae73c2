"""What makes training fast on a CPU: the precision and memory format the machine runs best, an allocator that
keeps freed activations, and a thread count that yields to other busy processes.

Measured on the project machine (2 cores, AVX-512 bf16/AMX; docs/benchmarks.md):
* bf16 autocast + channels_last train about 2x faster than fp32 NCHW; `auto` picks them where the CPU has native
  bf16 (and on GPUs with bf16), fp32 elsewhere. The resolved choice is what config.yaml and results.json record.
* glibc returns every freed block over its mmap threshold (at most 32 MiB, which a batch's activations exceed)
  straight to the kernel, so each step page-faults its activations in again; raising the mmap and trim thresholds
  keeps them in the heap: about 1.4x on every model.
* With another busy process on a 2-core machine, torch's 2 OpenMP threads wait on each other for a core that one
  of them does not get (resnet20 fell from ~850 to ~250 img/s; spin-count and passive-wait settings did not help
  and OMP_WAIT_POLICY=PASSIVE cost ~20% on a quiet machine). One thread fewer than busy cores gave ~600.
  `ThreadGovernor` measures the other processes' CPU use between checks and sets the thread count to the cores
  they leave, restoring it when they end; a quiet machine keeps every thread, so it costs nothing there.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
import time
from typing import Any, Optional

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ALLOCATOR_KEEP_BYTES = 1 << 30


def resolve_mixed_precision(value: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the device computes bf16 natively, else 'no'; other values unchanged."""
    if value != 'auto':
        return value
    if device.type == 'cuda':
        return 'bf16' if torch.cuda.is_bf16_supported() else 'no'
    if device.type == 'cpu':
        return 'bf16' if cpu_has_native_bf16() else 'no'
    return 'no'


def resolve_channels_last(value: Any, device: torch.device) -> bool:
    """'auto' -> True on CPU and CUDA (oneDNN and cuDNN both run convolutions faster in NHWC)."""
    if value == 'auto':
        return device.type in ('cpu', 'cuda')
    return bool(value)


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds so freed activations stay in the heap; False where not glibc."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _ALLOCATOR_KEEP_BYTES) and mallopt(_M_TRIM_THRESHOLD, _ALLOCATOR_KEEP_BYTES))


def _busy_cpu_seconds() -> Optional[float]:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None where there is no /proc."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


class ThreadGovernor:
    """Sets torch's intra-op threads to the cores other processes leave free, re-measured at each `update()`.

    Other processes' load = the machine's busy CPU time minus this process's, over the wall time since the last
    update (at least `min_window_s`, so one short burst does not flap the setting)."""

    def __init__(self, max_threads: Optional[int] = None, min_window_s: float = 2.0):
        self.max_threads = max_threads or torch.get_num_threads()
        self.min_window_s = min_window_s
        self.threads = self.max_threads
        self._last = self._sample()

    @staticmethod
    def _sample():
        return time.monotonic(), _busy_cpu_seconds(), time.process_time()

    @property
    def available(self) -> bool:
        return self._last[1] is not None

    def other_load(self) -> Optional[float]:
        """Cores other processes kept busy since the last sample, or None before `min_window_s` has passed."""
        now = self._sample()
        wall = now[0] - self._last[0]
        if not self.available or wall < self.min_window_s:
            return None
        others = ((now[1] - self._last[1]) - (now[2] - self._last[2])) / wall
        self._last = now
        return max(0.0, others)

    def update(self) -> int:
        load = self.other_load()
        if load is not None:
            # a core counts as taken once another process uses most of it
            wanted = max(1, min(self.max_threads, self.max_threads - math.floor(load + 0.4)))
            if wanted != self.threads:
                torch.set_num_threads(wanted)
                self.threads = wanted
        return self.threads
