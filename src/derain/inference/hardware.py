"""What the machine can do, detected rather than assumed: the CPU's kind (native bf16, int8 dot products,
AVX2), free memory.

Inference and training both choose their precision through :mod:`derain.inference.precision`, which reads
here, so they agree on one machine; :func:`choose_cpu_path` is the rule that picks the inference path per CPU
kind (docs/performance.md has the measurements behind it).
"""
from __future__ import annotations

import enum
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Collection

if TYPE_CHECKING:  # torch is imported where it is asked; `derain models` reads the CPU's kind without it
    import torch


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


class CpuKind(str, enum.Enum):
    """What a CPU offers the inference paths, best first (each kind has the ones below it too, on x86)."""

    BF16 = "bf16"  # AVX-512 BF16 or AMX: native bf16 (and int8 dot products)
    AVX512_VNNI = "avx512-vnni"  # int8 dot products on 512-bit vectors, no native bf16
    AVX_VNNI = "avx-vnni"  # int8 dot products on 256-bit vectors (recent Intel laptops), no native bf16
    AVX2 = "avx2"  # AVX2 and FMA only: int8 through 16-bit multiply-adds, no bf16
    OTHER = "other"  # anything else (older x86, ARM, unknown): neither path measured


def cpu_flag_set(cpuinfo: str) -> frozenset[str]:
    """The feature flags of ``cpuinfo`` (the text of /proc/cpuinfo): words of its ``flags`` lines."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


def cpu_kind(cpuinfo: str | None = None) -> CpuKind:
    """The :class:`CpuKind` of this machine (or of ``cpuinfo``, the text of a /proc/cpuinfo).

    Whole flag words are compared (``avx_vnni`` is not ``avx512_vnni``). Systems without /proc/cpuinfo
    (macOS, Windows) ask oneDNN for bf16 and torch for AVX2, and are never called VNNI.
    """
    text = _cpu_flags() if cpuinfo is None else cpuinfo
    flags = cpu_flag_set(text)
    if flags & {"avx512_bf16", "amx_bf16"}:
        return CpuKind.BF16
    if "avx512_vnni" in flags:
        return CpuKind.AVX512_VNNI
    if "avx_vnni" in flags:
        return CpuKind.AVX_VNNI
    if "avx2" in flags:
        return CpuKind.AVX2
    if not text.strip() and cpuinfo is None:
        return _kind_without_cpuinfo()
    return CpuKind.OTHER


def _kind_without_cpuinfo() -> CpuKind:
    import torch

    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        if mkldnn and mkldnn._is_mkldnn_bf16_supported():
            return CpuKind.BF16
    except (AttributeError, RuntimeError):
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return CpuKind.OTHER
    return CpuKind.AVX2 if capability in ("AVX2", "AVX512") else CpuKind.OTHER


# Inference paths on the CPU: float32 (the fast path, equal to the reference), native bf16 (the fast path with
# bf16 weights or autocast), int8 (an onnxruntime model quantised by derain.inference.quantize).
CPU_PATHS = ("fp32", "bf16", "int8")
# x86 CPUs without native bf16, where the default model's CPU student is the default
# (derain.inference.model_choice).
STUDENT_KINDS = (CpuKind.AVX2, CpuKind.AVX_VNNI, CpuKind.AVX512_VNNI)


def choose_cpu_path(kind: CpuKind, available: Collection[str]) -> str:
    """The fastest inference path that holds quality on a CPU of ``kind``, among ``available`` (names of
    :data:`CPU_PATHS`; ``int8`` only where onnxruntime is installed and the model has an int8 version).

    - native bf16 where the CPU has it: the same quality as float32 (Rain100L equal to 0.001 dB) and the
      fastest measured there, so nothing gets slower on such CPUs;
    - else int8 on CPUs with int8 dot products (VNNI) or AVX2 (16-bit multiply-adds; the int8 model is made
      with 7-bit weights, so those cannot saturate and AVX2 computes the same integers as VNNI);
    - else float32. Other CPUs keep float32: int8 was never measured on them.
    """
    if kind is CpuKind.BF16 and "bf16" in available:
        return "bf16"
    if kind is not CpuKind.OTHER and "int8" in available:
        return "int8"
    return "fp32"


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 pays off.

    Elsewhere bf16 is emulated and 5-50x slower than float32 (measured on an AVX2-only EPYC), so the
    automatic choices keep float32 there.
    """
    flags = _cpu_flags()
    if cpu_kind(flags) is CpuKind.BF16:
        return True
    import torch

    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:  # non-Linux systems have no /proc/cpuinfo: ask oneDNN
        return bool(mkldnn and mkldnn._is_mkldnn_bf16_supported() and not flags)
    except (AttributeError, RuntimeError):
        return False


def available_memory_bytes(device: torch.device) -> int:
    """Memory a new allocation can use now: free GPU memory on CUDA, MemAvailable (or the cgroup limit's
    headroom, whichever is smaller) on the CPU."""
    if device.type == "cuda":
        import torch

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


def cpu_model_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` says: benchmarks print it beside
    every number."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
