"""Where a tile's forward pass runs: PyTorch eager (always there) or OpenVINO (the ``openvino`` extra).

On an Intel Xeon with AMX (2 cores), OpenVINO 2026.4 ran the 23-block RRDBNet with Real-ESRGAN x4plus weights 1.6x
faster than our bf16 autocast + channels_last eager pass on the same 232x232 tile (1.35 s vs 2.19 s, 1.43 vs 0.88
TFLOP/s), and closer to fp32 (60.0 vs 53.6 dB): it fuses the activations and the dense blocks' concatenations
that eager PyTorch runs as separate passes. ``backend="auto"`` therefore uses it on CPU when it is installed.

The network reaches OpenVINO through its PyTorch frontend (a TorchScript trace, no ONNX file and no call of the ``ovc``
converter, whose telemetry is on by default): the converted model is kept in the tile cache's folder, keyed by the
weights' fingerprint, in fp32 (no fp16 compression), and compiled per precision (``INFERENCE_PRECISION_HINT`` bf16 or
f32). Square inputs (full tiles, the tuner's probes) get a model compiled for their shape (about 10 % faster than
the dynamic-shape one); other shapes (edge tiles, whole images) run on the dynamic-shape model, so that a new shape
never waits for a compilation.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from srgan_lib import UserError
from srgan_lib.inference.cache import cache_path, weights_fingerprint
from srgan_lib.models import Generator

log = logging.getLogger(__name__)
Backend = Literal["auto", "torch", "openvino"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino")
STATIC_SHAPES = 8  # compiled fixed-shape models kept per precision (least recently used dropped)
_SHARED: dict[tuple[str, int], OpenVINOForward] = {}


class BackendError(UserError, ValueError):
    """A backend cannot run here (not installed, not this device, not this network); the message says what to do."""


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: OpenVINO on CPU when it is installed, else PyTorch; ``openvino`` asked for explicitly needs the
    package and a CPU device (a clear error otherwise)."""
    if backend not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_installed() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU; device is {device} (use --backend torch)")
        if not openvino_installed():
            raise BackendError("the openvino backend needs the openvino package: pip install 'srgan[openvino]'")
    return backend


def backend_label(backend: str) -> str:
    """The backend and its version, for the tuner's cache key (``openvino 2026.4.1``); PyTorch's is in the key."""
    if backend == "openvino":
        from importlib.metadata import version

        return f"openvino {version('openvino')}"
    return backend


class OpenVINOForward:
    """A generator compiled by OpenVINO for the CPU: ``forward(x, precision)`` maps an N x 3 x H x W float tensor
    to the network's raw output (float32), in ``bf16`` or ``fp32``."""

    def __init__(self, generator: Generator, threads: int | None = None, ir: Path | None = None) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.threads = threads or torch.get_num_threads()
        self.model = self.core.read_model(str(ir or self._ir(generator)))
        self.dynamic: dict[str, Any] = {}
        self.static: OrderedDict[tuple[str, tuple[int, ...]], Any] = OrderedDict()

    @classmethod
    def shared(cls, generator: Generator) -> OpenVINOForward:
        """One compiled model per weights and thread count in a process (several Upscalers of one network, e.g.
        a served model's settings, share its compilations)."""
        ir = cls._ir(generator)
        key = (str(ir), torch.get_num_threads())
        if key not in _SHARED:
            _SHARED[key] = cls(generator, ir=ir)
        return _SHARED[key]

    @staticmethod
    def _ir(generator: Generator) -> Path:
        """The converted model (OpenVINO IR, fp32 weights), converted once per weights and kept beside the tile
        cache."""
        import openvino as ov
        from openvino.frontend import FrontEndManager
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

        folder = cache_path().parent / "openvino"
        path = folder / f"{generator.architecture}-x{generator.scale}-{weights_fingerprint(generator.module)}.xml"
        if path.is_file() and path.with_suffix(".bin").is_file():
            return path
        log.info("converting %s for OpenVINO (once per weights): %s", generator.architecture, path)
        module = generator.module
        fmt = torch.channels_last if module_is_channels_last(module) else torch.contiguous_format
        plain = module.to(memory_format=torch.contiguous_format)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python control flow: the graph is static
                decoder = TorchScriptPythonDecoder(plain, example_input=(torch.rand(1, 3, 32, 32),))
            frontend = FrontEndManager().load_by_framework("pytorch")
            converted = frontend.convert(frontend.load(decoder))
        finally:
            module.to(memory_format=fmt)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:  # the .xml last: present means complete
            ov.save_model(converted, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
            os.replace(Path(tmp) / "model.bin", path.with_suffix(".bin"))
            os.replace(Path(tmp) / "model.xml", path)
        return path

    def _config(self, precision: str) -> dict[str, Any]:
        return {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads}

    def _compiled(self, precision: str, shape: tuple[int, ...]) -> Any:
        if shape[-1] != shape[-2]:
            if precision not in self.dynamic:
                self.dynamic[precision] = self.core.compile_model(self.model, "CPU", self._config(precision))
            return self.dynamic[precision]
        key = (precision, shape)
        if key in self.static:
            self.static.move_to_end(key)
            return self.static[key]
        model = self.model.clone()
        model.reshape(list(shape))
        self.static[key] = self.core.compile_model(model, "CPU", self._config(precision))
        if len(self.static) > STATIC_SHAPES:
            self.static.popitem(last=False)
        return self.static[key]

    def __call__(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self._compiled(precision, tuple(array.shape))(array)[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def checked_openvino(generator: Generator, module: torch.nn.Module, asked: str) -> OpenVINOForward | None:
    """The network on OpenVINO (:meth:`OpenVINOForward.shared`) when it runs there faithfully
    (:func:`verify_openvino`); else None with a warning, or a :class:`BackendError` when OpenVINO was ``asked``
    for."""
    forward = OpenVINOForward.shared(generator)
    why = verify_openvino(forward, module, generator.value_range)
    if not why:
        return forward
    if asked == "openvino":
        raise BackendError(f"OpenVINO does not run {generator.architecture} faithfully ({why}); use --backend torch")
    log.warning("OpenVINO does not run %s faithfully (%s): PyTorch runs it", generator.architecture, why)
    return None


def verify_openvino(forward: OpenVINOForward, module: torch.nn.Module, value_range: tuple[float, float]) -> str:
    """Why OpenVINO's fp32 output differs from PyTorch's on two small inputs (one of odd size), or "" when it does
    not: a network whose forward computes with its input's shape in Python (a padding, a crop) can trace to a
    graph that holds only for the traced size."""
    span = value_range[1] - value_range[0]
    for h, w in ((24, 24), (21, 27)):
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        try:
            with torch.no_grad():
                ref = module(x.contiguous(memory_format=torch.channels_last)).float()
            out = forward(x, "fp32")
        except RuntimeError as exc:
            return f"a {h}x{w} input failed: {str(exc).splitlines()[0]}"
        if out.shape != ref.shape or float((out - ref).abs().max()) > 1e-3 * span:
            return f"a {h}x{w} input gave a different output than PyTorch's"
    return ""


def module_is_channels_last(module: torch.nn.Module) -> bool:
    """Whether a module's 4-D weights are channels_last (the Upscaler converts them; conversion needs them plain)."""
    weight = next((p for p in module.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
