"""What the machine can do, detected rather than assumed: native bf16 on the CPU, free memory.

Inference (:mod:`derain.fastpath`) and training (:mod:`derain.train.loop`) both choose their precision from
here, so they agree on one machine.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 pays off.

    Elsewhere bf16 is emulated and 5-50x slower than float32 (measured on an AVX2-only EPYC), so the
    automatic choices keep float32 there.
    """
    flags = _cpu_flags()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return True
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:  # non-Linux systems have no /proc/cpuinfo: ask oneDNN
        return bool(mkldnn and mkldnn._is_mkldnn_bf16_supported() and not flags)
    except (AttributeError, RuntimeError):
        return False


def available_memory_bytes(device: torch.device) -> int:
    """Memory a new allocation can use now: free GPU memory on CUDA, MemAvailable (or the cgroup limit's
    headroom, whichever is smaller) on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    available = _meminfo_available()
    limit = _cgroup_headroom()
    candidates = [v for v in (available, limit) if v is not None]
    return min(candidates) if candidates else 4 * 1024 ** 3  # unknown system: assume a small laptop


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _cgroup_headroom() -> int | None:
    """Limit minus usage of this process's cgroup (v2), where a container sets one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        usage = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    if limit == "max":
        return None
    return max(0, int(limit) - int(usage))
