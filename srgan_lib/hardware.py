"""What this hardware runs fast: the one rule for autocast precision and memory format, in training and inference.

- **bf16 autocast** pays on CUDA GPUs with bf16 support and on CPUs with native bf16 instructions (AVX512_BF16, as
  on AMD Zen 4 / Intel Cooper Lake and later, or AMX on Intel Sapphire Rapids and later): the convolutions run in
  bf16 while master weights, optimiser state, losses and the EMA stay fp32. Without those instructions PyTorch
  emulates bf16 and a training step is several times *slower* than fp32 (measured here: 10x on an AVX2-only EPYC),
  so such CPUs run fp32 and say why.
- **fp16 autocast** only on CUDA (CPUs without AVX512_FP16/AMX-FP16 emulate it); it comes with the gradient scaler.
- **channels_last** pays on both: on CPU oneDNN's NHWC convolutions were 1.5x faster for SRResNet even in fp32 (same
  AVX2 EPYC); on GPUs it is what tensor cores want.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan_lib import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
# /proc/cpuinfo flags that give native bf16 dot products (x86); the first present names the capability
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceUnavailable(UserError, ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """The one device rule: ``auto`` -> CUDA when present (this process's GPU under torchrun), else CPU; ``cuda``
    -> ``cuda:<local_rank>``; asking for CUDA on a machine without it is an error naming the fix."""
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} asked for, but no CUDA device is available; use auto or cpu")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    return torch.device(name)


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first value of each field of ``/proc/cpuinfo`` (Linux; empty where it cannot be read)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (x86 ``flags``, Arm ``Features``); empty where they cannot be read."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_native(precision: str, flags: frozenset[str] | None = None) -> str | None:
    """The instruction set that runs ``precision`` (bf16) natively on this CPU, or None."""
    flags = cpu_flags() if flags is None else flags
    wanted = CPU_BF16_FLAGS if precision == "bf16" else ()
    return next((f.upper() for f in wanted if f in flags), None)


def cpu_name() -> str:
    """The CPU's model name (for logs and MLflow tags)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


@dataclass(frozen=True)
class ComputeFormat:
    """The precision and memory format a run actually uses, and why (for the log line and MLflow)."""

    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    reason: str = ""

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return AMP_DTYPES.get(self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def layout(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    def describe(self) -> str:
        text = f"{self.precision}, {self.layout}"
        return f"{text} ({self.reason})" if self.reason else text


def resolve_compute_format(device: torch.device, precision: str, channels_last: bool, *,
                   flags: frozenset[str] | None = None) -> ComputeFormat:
    """The precision to run for a requested one (``none``/``fp32``, ``bf16``, ``fp16``; ``auto``: bf16 where the
    device runs it natively, else fp32) on ``device``, with the reason when the request cannot be honoured."""
    precision = "fp32" if precision == "none" else precision
    if precision not in (*PRECISIONS, "auto"):
        raise ValueError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        if precision in ("auto", "bf16") and not torch.cuda.is_bf16_supported():
            return ComputeFormat("fp32", channels_last, f"{torch.cuda.get_device_name(device)} has no bf16")
        return ComputeFormat("bf16" if precision == "auto" else precision, channels_last)
    if device.type != "cpu":
        return ComputeFormat("fp32", False, "" if precision == "fp32" else f"no autocast on {device.type}")
    if precision == "fp32":
        return ComputeFormat("fp32", channels_last)
    if precision == "fp16":
        return ComputeFormat("fp32", channels_last, "fp16 autocast is a CUDA lever (on CPU use bf16)")
    native = cpu_native("bf16", flags)
    if native is None:
        return ComputeFormat("fp32", channels_last, "this CPU has no AMX_BF16 or AVX512_BF16 instructions: bf16 "
                             "would be emulated and slower than fp32")
    return ComputeFormat("bf16", channels_last, f"native {native}")
