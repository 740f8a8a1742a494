"""Export a generator to ONNX with dynamic batch, height and width, for runtimes outside PyTorch.

The exported graph takes RGB in [0, 1] (N x 3 x H x W, float32) and returns RGB in [0, 1] at ``scale`` times the size,
whatever the network's own output range (SRResNet's tanh [-1, 1] is mapped inside the graph). ``onnx`` and
``onnxruntime`` are optional dependencies (``pip install srgan[onnx]``); without them export says what to install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from srgan_lib.io.images import atomic_path
from srgan_lib.models import Generator, as_generator, to_unit

log = logging.getLogger(__name__)


class UnitRangeGenerator(nn.Module):
    """The generator with its output mapped to [0, 1] and clamped: the contract of the exported graph."""

    def __init__(self, model: nn.Module, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.model = model
        self.value_range = value_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit(self.model(x), self.value_range).clamp(0, 1)


@dataclass(frozen=True)
class ExportResult:
    """Where the file went and, when onnxruntime is installed, how far it is from PyTorch on a test input."""

    path: Path
    max_abs_diff: float | None
    checked_shape: tuple[int, ...] | None


def export_onnx(model: Generator | nn.Module, out: str | Path, *, opset: int = 18, verify: bool = True) -> ExportResult:
    """Write ``model`` as ONNX (atomically) and, if onnxruntime is available, compare it with PyTorch on CPU."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"ONNX export needs the optional packages onnx and onnxscript ({exc.name} is missing): "
                           "pip install 'srgan[onnx]'") from None
    gen = as_generator(model)
    wrapped = UnitRangeGenerator(gen.module.float().cpu().eval(), gen.value_range)
    example = torch.rand(1, 3, 32, 32)
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=8, max=16384),
            3: torch.export.Dim("width", min=8, max=16384)}
    out = Path(out)
    with atomic_path(out) as tmp:
        program = torch.onnx.export(wrapped, (example,), input_names=["lr"], output_names=["sr"],
                                    dynamic_shapes={"x": dims}, opset_version=opset, dynamo=True, verbose=False)
        program.save(str(tmp))
    if not verify:
        return ExportResult(out, None, None)
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s was not checked against PyTorch", out)
        return ExportResult(out, None, None)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 27, 35, generator=torch.Generator().manual_seed(0))  # odd sizes: really dynamic
    got = session.run(None, {"lr": x.numpy()})[0]
    with torch.no_grad():
        want = wrapped(x).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    return ExportResult(out, float(np.abs(got - want).max()), tuple(x.shape))
