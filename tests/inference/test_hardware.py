"""The device rule (srgan_lib.hardware): bf16 only where the CPU has native bf16 instructions, read from the kernel's
flags; channels_last everywhere it is asked for; the reason recorded when a request is not honoured."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srgan_lib.hardware import cpu_flags, cpu_native, resolve_compute_format

CPU = torch.device("cpu")
ZEN3 = frozenset({"avx", "avx2", "fma", "f16c"})  # what this project's 2-core CI machines report (AVX2 EPYC)
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_tile", "amx_bf16", "amx_int8"}


def test_cpu_flags_agree_with_pytorchs_kernel_dispatch():
    """Our flag reading against PyTorch's own choice of vector kernels (its CPUID probe): what it dispatches to, the
    flags must show."""
    flags = cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()  # DEFAULT | AVX2 | AVX512 (x86), or an ARM level
    needs = {"AVX2": {"avx2", "fma"}, "AVX512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}.get(capability, set())
    assert needs <= flags, (capability, sorted(needs - flags))
    assert ("avx2" in flags) == (capability in ("AVX2", "AVX512")) or not Path("/proc/cpuinfo").is_file()


@pytest.mark.parametrize(("flags", "precision", "reason"), [
    (ZEN3, "fp32", "no AMX_BF16 or AVX512_BF16"),
    (ZEN4, "bf16", "native AVX512_BF16"),
    (SAPPHIRE_RAPIDS, "bf16", "native AMX_BF16"),
])
def test_bf16_on_cpu_only_with_native_instructions(flags, precision, reason):
    for asked in ("bf16", "auto"):
        levers = resolve_compute_format(CPU, asked, True, flags=flags)
        assert levers.precision == precision and reason in levers.reason
        assert levers.amp_dtype == (torch.bfloat16 if precision == "bf16" else None)
        assert levers.memory_format == torch.channels_last and levers.layout == "channels_last"


def test_explicit_fp32_and_fp16_on_cpu():
    assert resolve_compute_format(CPU, "none", False, flags=SAPPHIRE_RAPIDS).describe() == "fp32, contiguous"
    assert resolve_compute_format(CPU, "fp32", True, flags=ZEN4).reason == ""
    fp16 = resolve_compute_format(CPU, "fp16", True, flags=SAPPHIRE_RAPIDS)
    assert fp16.precision == "fp32" and "CUDA" in fp16.reason
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_compute_format(CPU, "int8", True)


def test_this_machine_agrees_with_pytorchs_own_cpu_detection():
    """Our /proc/cpuinfo reading against PyTorch's (the cpuinfo library's CPUID probe) on the machine running this."""
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert (cpu_native("bf16") is not None) == native
    assert resolve_compute_format(CPU, "bf16", True).precision == ("bf16" if native else "fp32")


def test_one_device_rule_for_training_and_inference():
    from srgan_lib.hardware import DeviceUnavailable, resolve_device

    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")) == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
    else:
        with pytest.raises(DeviceUnavailable, match="no CUDA device is available; use auto or cpu"):
            resolve_device("cuda:1")
