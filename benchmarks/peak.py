"""The matrix units' measured peak: ``torch.mm`` of two 4096 x 4096 matrices (the figure every TFLOP/s in these
benchmarks is quoted against, measured in the same process as the rows it is compared with)."""

from __future__ import annotations

import time

import torch


def matmul_peak(dtype: torch.dtype, n: int = 4096, repeats: int = 3, device: str = "cpu") -> float:
    """TFLOP/s of the fastest of ``repeats`` n x n x n ``torch.mm`` in ``dtype`` (after one warm-up)."""
    a = torch.rand(n, n, device=device).to(dtype)
    b = torch.rand(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12
