"""CPU kinds from /proc/cpuinfo flags, and the rule that picks the inference path per kind (flags faked)."""
from __future__ import annotations

import pytest
import torch

from derain.inference import hardware
from derain.inference.hardware import CpuKind, choose_cpu_path, cpu_flag_set, cpu_kind
from derain.inference.precision import compute_dtype, cpu_inference_precision

BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma"
# /proc/cpuinfo text of one core per kind (real flag names, other fields as Linux writes them)
CPUINFO = {
    CpuKind.BF16: f"{BASE} avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16",  # Zen 4/5, Sapphire Rapids
    CpuKind.AVX512_VNNI: f"{BASE} avx2 avx512f avx512bw avx512_vnni",  # Cascade Lake, Ice Lake
    CpuKind.AVX_VNNI: f"{BASE} avx2 avx_vnni",  # Alder Lake and later laptops
    CpuKind.AVX2: f"{BASE} avx2",  # Zen 2/3, Haswell to Comet Lake
    CpuKind.OTHER: BASE,  # pre-AVX2 x86
}


def cpuinfo(flags: str, cores: int = 2) -> str:
    core = ("processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n"
            "bugs\t\t: sysret_ss_attrs\n")
    return "\n".join(core.format(i=i, flags=flags) for i in range(cores))


@pytest.mark.parametrize("kind", list(CPUINFO))
def test_each_kind_is_told_from_its_flags(kind, monkeypatch):
    text = cpuinfo(CPUINFO[kind])
    assert cpu_kind(text) is kind
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: text)  # the machine's own /proc/cpuinfo, faked
    assert cpu_kind() is kind
    assert hardware.cpu_supports_bf16() is (kind is CpuKind.BF16)  # the fast path's bf16 agrees with the kind
    assert (compute_dtype("auto", torch.device("cpu"), fast=True) == torch.bfloat16) is (kind is CpuKind.BF16)


def test_flags_are_whole_words_of_the_flags_line():
    # avx_vnni is not avx512_vnni, and a flag named in another field (bugs, a model name) does not count.
    assert cpu_kind(cpuinfo(f"{BASE} avx2 avx_vnni")) is CpuKind.AVX_VNNI
    assert cpu_kind(cpuinfo(f"{BASE} avx2") + "\nmodel name\t: avx512_bf16 avx512_vnni\n") is CpuKind.AVX2
    assert cpu_kind(cpuinfo(f"{BASE} avx2 amx_tile amx_bf16 amx_int8")) is CpuKind.BF16  # AMX without AVX-512 BF16
    assert "avx2" in cpu_flag_set(cpuinfo(f"{BASE} avx2"))
    # ARM's /proc/cpuinfo has "Features", not "flags": nothing measured there.
    assert cpu_kind("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n") is CpuKind.OTHER


def test_this_machine_has_a_kind():
    assert isinstance(cpu_kind(), CpuKind)


@pytest.mark.parametrize("kind,with_int8,without_int8", [
    (CpuKind.BF16, "bf16", "bf16"),  # native bf16: nothing gets slower there, int8 or not
    (CpuKind.AVX512_VNNI, "int8", "fp32"),
    (CpuKind.AVX_VNNI, "int8", "fp32"),
    (CpuKind.AVX2, "int8", "fp32"),
    (CpuKind.OTHER, "fp32", "fp32"),  # int8 never measured on such CPUs
])
def test_the_path_chosen_per_kind(kind, with_int8, without_int8):
    native = {"bf16"} if kind is CpuKind.BF16 else set()
    assert choose_cpu_path(kind, {"fp32", "int8"} | native) == with_int8
    assert choose_cpu_path(kind, {"fp32"} | native) == without_int8


@pytest.mark.parametrize("kind", list(CPUINFO))
def test_precision_option_per_kind(kind, monkeypatch):
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: cpuinfo(CPUINFO[kind]))
    picks_int8 = kind in (CpuKind.AVX512_VNNI, CpuKind.AVX_VNNI, CpuKind.AVX2)
    assert cpu_inference_precision("auto", True, has_int8=True) == ("int8" if picks_int8 else "auto")
    assert cpu_inference_precision("auto", True, has_int8=False) == "auto"  # no int8 version: the torch paths
    assert cpu_inference_precision("auto", False, has_int8=True) == "auto"  # --no-fast: the reference path
    for forced in ("fp32", "bf16", "int8"):  # --precision overrides the rule on every kind
        assert cpu_inference_precision(forced, True, has_int8=True) == forced
