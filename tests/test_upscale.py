"""Upscaling: tiled == untiled, image modes kept, bad files reported, the pixel limit, MLflow registry models."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import srgan_lib.upscale as upscale_mod
from srgan_lib.models import as_generator, build_model, load_generator
from srgan_lib.upscale import Upscaler, auto_tile, bytes_per_lr_pixel, tile_grid
from tests.conftest import run_cli


def _checkpoint(path: Path, name: str = "srresnet", seed: int = 0, **options) -> Path:
    torch.manual_seed(seed)
    options = options or ({"num_block": 2, "num_feat": 16} if name == "srresnet" else
                          {"num_block": 1, "num_feat": 16, "num_grow_ch": 8})
    model = build_model(name, **options)
    torch.save({"params": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def srresnet_ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "srresnet_tiny.pth")


@pytest.fixture(scope="module")
def rrdbnet_ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "rrdbnet_tiny.pth", "rrdbnet")


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image with edges (not flat, so that seams would show)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    return np.ascontiguousarray(img)


def test_tile_grid_covers_the_image_once():
    cover = np.zeros((70, 45), int)
    for y0, y1, x0, x1 in tile_grid(70, 45, 16):
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all() and len(list(tile_grid(70, 45, 16))) == 5 * 3
    assert list(tile_grid(70, 45, 0)) == [(0, 70, 0, 45)]


def test_auto_tile_follows_memory_and_the_cpu_cap(monkeypatch):
    """A quarter of the free memory sizes the tile; CPU caps it at 512 (measured slower per pixel beyond), CUDA at
    2048; a small image that fits runs whole."""
    model = as_generator(build_model("rrdbnet"))
    per_px = bytes_per_lr_pixel(model)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(upscale_mod, "_available_bytes", lambda device: 1 << 40)  # a very large machine
    assert auto_tile(model, cpu, 3000, 4000, 16) == 512
    assert auto_tile(model, cuda, 3000, 4000, 16) == 2048
    assert auto_tile(model, cpu, 500, 540, 16) == 0 and auto_tile(model, cpu, 600, 600, 16) == 512
    budget = 4 * 300**2 * per_px  # a tile of 300 px with its padding fits a quarter of this exactly
    monkeypatch.setattr(upscale_mod, "_available_bytes", lambda device: budget)
    assert auto_tile(model, cpu, 3000, 4000, 16) == (300 - 32) // 32 * 32
    monkeypatch.setattr(upscale_mod, "_available_bytes", lambda device: 1 << 20)
    assert auto_tile(model, cpu, 3000, 4000, 16) == 64  # never below 64


@pytest.mark.parametrize("ckpt_name, pad", [("srresnet_ckpt", 16), ("rrdbnet_ckpt", 24)])
def test_tiled_output_equals_untiled(ckpt_name, pad, request):
    model = load_generator(request.getfixturevalue(ckpt_name))
    img = _photo(90, 120)  # 4 x 3 tiles of 32
    whole = Upscaler(model, device="cpu", tile=0)
    tiled = Upscaler(model, device="cpu", tile=32, tile_pad=pad)
    f_whole = whole.upscale_array(img.astype(np.float32) / 255)
    f_tiled = tiled.upscale_array(img.astype(np.float32) / 255)
    assert f_tiled.shape == (360, 480, 3)
    assert np.abs(f_tiled - f_whole).max() <= 1e-5
    u_whole, u_tiled = whole.upscale_array(img), tiled.upscale_array(img)
    assert np.abs(u_tiled.astype(int) - u_whole.astype(int)).max() <= 1
    # without context the seams are there: the test can tell
    seams = Upscaler(model, device="cpu", tile=32, tile_pad=0).upscale_array(img.astype(np.float32) / 255)
    assert np.abs(seams - f_whole).max() > 1e-3


def test_modes_orientation_and_icc_are_kept(srresnet_ckpt):
    up = Upscaler(srresnet_ckpt, device="cpu", tile=0)
    rgb = Image.fromarray(_photo(24, 32))

    grey = up.upscale(rgb.convert("L"))
    assert (grey.mode, grey.size) == ("L", (128, 96))

    rgba = rgb.convert("RGBA")
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1)))
    rgba.putalpha(alpha)
    out = up.upscale(rgba)
    assert (out.mode, out.size) == ("RGBA", (128, 96))
    pil_alpha = np.asarray(alpha.resize((128, 96), Image.BICUBIC), dtype=int)  # Pillow's own 8-bit bicubic
    assert np.abs(np.asarray(out.getchannel("A"), dtype=int) - pil_alpha).max() <= 1
    by_model = Upscaler(srresnet_ckpt, device="cpu", tile=0, alpha="model").upscale(rgba)
    assert by_model.mode == "RGBA"

    deep = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    assert deep.mode == "I;16"
    out16 = up.upscale(deep)
    assert (out16.mode, out16.size) == ("I;16", (128, 96)) and np.asarray(out16).max() > 255

    pal = rgb.quantize(colors=16)
    outp = up.upscale(pal)
    assert outp.mode == "P" and outp.getpalette() == pal.getpalette()

    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the output is upright and says so
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb.save(buf, format="PNG", exif=exif.tobytes(), icc_profile=icc)
    rotated = up.upscale(Image.open(io.BytesIO(buf.getvalue())))
    assert rotated.size == (96, 128)
    assert rotated.info["icc_profile"] == icc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_corrupt(path: Path, like: Path) -> None:
    data = like.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_cli_reports_a_bad_file_and_writes_the_others(srresnet_ckpt, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_photo(20, 28)).save(src / "a.png")
    Image.fromarray(_photo(16, 16, seed=1)).convert("L").save(src / "sub" / "b.jpg", quality=95)
    _write_corrupt(src / "broken.png", src / "a.png")
    Image.fromarray(_photo(8, 8)).save(src / "sub" / "anim.gif")  # not an image format we upscale
    (src / "notes.txt").write_text("x")
    (src / ".DS_Store").write_bytes(b"x")
    out = tmp_path / "out"
    res = run_cli("upscale", str(src), "-o", str(out), "--model", str(srresnet_ckpt), check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "processed 2, skipped 0, failed 1, not images 3" in res.stdout
    assert "broken.png" in res.stderr
    # every file of the folder is accounted for, with its reason
    assert "anim.gif: not a supported image extension (.gif" in res.stderr
    assert "notes.txt: not a supported image extension (.txt" in res.stderr and ".DS_Store: hidden file" in res.stderr
    assert Image.open(out / "a.png").size == (112, 80)
    with Image.open(out / "sub" / "b.jpg") as b:
        assert (b.format, b.mode, b.size) == ("JPEG", "L", (64, 64))
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    assert (out / "a.png").stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private 0600
    before = (out / "a.png").stat().st_mtime_ns

    again = run_cli("upscale", str(src / "a.png"), "-o", str(out), "--model", str(srresnet_ckpt), check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    skip = run_cli("upscale", str(src / "a.png"), "-o", str(out), "--model", str(srresnet_ckpt), "--skip-existing")
    assert "processed 0, skipped 1, failed 0, not images 0" in skip.stdout
    assert (out / "a.png").stat().st_mtime_ns == before


def test_pixel_limit_refuses_large_images(srresnet_ckpt, tmp_path):
    Image.fromarray(_photo(64, 64)).save(tmp_path / "big.png")
    res = run_cli("upscale", str(tmp_path / "big.png"), "-o", str(tmp_path / "out"), "--model", str(srresnet_ckpt),
                  "--max-pixels", "1000", check=False)
    assert res.returncode == 1 and "over the limit" in res.stderr
    assert not (tmp_path / "out" / "big.png").exists()


def test_model_from_the_mlflow_registry(srresnet_ckpt, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from srgan_lib import tracking

    uri = tracking.resolve_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("reg", tracking.artifact_root(uri))
    run = client.create_run(exp)
    client.log_artifact(run.info.run_id, str(srresnet_ckpt), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("tiny")
    version = client.create_model_version("tiny", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("tiny", "champion", version.version)
    monkeypatch.chdir(tmp_path)
    img = _photo(20, 20)
    expected = Upscaler(srresnet_ckpt, device="cpu", tile=0).upscale_array(img)
    for ref in ("models:/tiny@champion", f"models:/tiny/{version.version}"):
        got = Upscaler(ref, device="cpu", tile=0, tracking_uri=uri).upscale_array(img)
        assert np.array_equal(got, expected)
    with pytest.raises(FileNotFoundError, match="models:/tiny@nope"):
        Upscaler("models:/tiny@nope", device="cpu", tracking_uri=uri)


def test_onnx_export_matches_pytorch(srresnet_ckpt, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (optional: pip install 'srgan[onnx]')")
    pytest.importorskip("onnxscript", reason="onnxscript not installed (optional: pip install 'srgan[onnx]')")
    import onnxruntime as ort

    out = tmp_path / "tiny.onnx"
    res = run_cli("export", "--model", str(srresnet_ckpt), "--format", "onnx", "-o", str(out))
    assert "max |diff|" in res.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    img = _photo(21, 30)  # a size the export never saw
    got = session.run(None, {"lr": (img.astype(np.float32) / 255).transpose(2, 0, 1)[None]})[0]
    # the export is fp32: compare with fp32 PyTorch (precision auto is bf16 on an AVX512_BF16 CPU)
    want = Upscaler(srresnet_ckpt, device="cpu", tile=0, precision="fp32").upscale_array(img.astype(np.float32) / 255)
    assert got.shape == (1, 3, 84, 120)
    assert np.abs(got[0].transpose(1, 2, 0) - want).max() <= 1e-5


def test_sixteen_bit_colour_png_stays_sixteen_bit(srresnet_ckpt, tmp_path):
    import png  # pypng: Pillow would reduce 16-bit colour to 8 bits

    rng = np.random.default_rng(3)
    rgb = (_photo(12, 16).astype(np.uint16) * 257 + rng.integers(0, 257, (12, 16, 3))).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full((12, 16, 1), 40000, np.uint16)], axis=2)
    with open(tmp_path / "deep.png", "wb") as fh:
        png.Writer(16, 12, bitdepth=16, greyscale=False, alpha=True).write(fh, rgba.reshape(12, -1))
    run_cli("upscale", str(tmp_path / "deep.png"), "-o", str(tmp_path / "out"), "--model", str(srresnet_ckpt))
    width, height, rows, info = png.Reader(filename=str(tmp_path / "out" / "deep.png")).asDirect()
    out = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, info["planes"])
    assert (width, height, info["bitdepth"], info["planes"]) == (64, 48, 16, 4)
    assert (out[..., :3] % 257 != 0).any()  # real 16-bit values, not 8-bit ones scaled up
    assert np.abs(out[..., 3].astype(int) - 40000).max() <= 1  # a constant alpha stays constant
    expected = Upscaler(srresnet_ckpt, device="cpu", tile=0).upscale_array(rgb)
    assert np.array_equal(out[..., :3], expected)


class _OverflowsUnderAutocast(torch.nn.Module):
    """A generator whose reduced-precision pass overflows (what fp16 does to some real images): inf under autocast."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y * float("inf") if torch.is_autocast_enabled(x.device.type) else y


def test_non_finite_reduced_precision_tiles_are_redone_in_fp32(srresnet_ckpt):
    gen = load_generator(srresnet_ckpt)
    model = dataclasses.replace(gen, module=_OverflowsUnderAutocast(gen.module))
    img = _photo(40, 40)
    guarded = Upscaler(model, device="cpu", tile=20, tile_pad=8, precision="bf16")
    out = guarded.upscale_array(img)
    assert guarded.fp32_retries == 4  # every tile overflowed and was redone
    assert np.array_equal(out, Upscaler(model, device="cpu", tile=20, tile_pad=8).upscale_array(img))
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        Upscaler(model, device="cpu", precision="fp16")


def test_tiff_outputs_multi_page_float_16_bit_and_cmyk(srresnet_ckpt, tmp_path):
    """TIFF inputs that used to fail with "codec configuration error" (their structure tags were copied into the
    output's EXIF) are written; every page of a multi-page TIFF is upscaled; float images stay float."""
    src = tmp_path / "in"
    src.mkdir()
    pages = [Image.fromarray(_photo(16, 20, seed=s)) for s in range(3)]
    pages[0].save(src / "multi.tif", save_all=True, append_images=pages[1:])
    grey = _photo(16, 16)[..., 0].astype(np.float32) / 255
    Image.fromarray(grey, mode="F").save(src / "float.tif")
    Image.fromarray(_photo(16, 16)[..., 0].astype(np.uint16) * 257).save(src / "grey16.tif")
    Image.fromarray(_photo(16, 16)).convert("CMYK").save(src / "cmyk.tif")
    Image.fromarray(np.full((8, 8), 2.0, np.float32), mode="F").save(src / "too_bright.tif")
    out = tmp_path / "out"
    res = run_cli("upscale", str(src), "-o", str(out), "--model", str(srresnet_ckpt), check=False)
    assert "processed 4, skipped 0, failed 1" in res.stdout, res.stdout + res.stderr
    assert "too_bright.tif: float image with values outside 0..1 (2..2)" in res.stderr
    assert "scale it to 0..1 first" in res.stderr
    up = Upscaler(srresnet_ckpt, device="cpu", tile=0)
    with Image.open(out / "multi.tif") as multi:
        assert multi.n_frames == 3
        for i, page in enumerate(pages):
            multi.seek(i)
            assert np.array_equal(np.asarray(multi.convert("RGB")), np.asarray(up.upscale(page))), f"page {i}"
    with Image.open(out / "float.tif") as f:
        expected = up.upscale_array(np.repeat(grey[..., None], 3, axis=2)) @ np.array([0.299, 0.587, 0.114],
                                                                                        np.float32)
        assert f.mode == "F" and np.allclose(np.asarray(f), expected, atol=1e-6)
    with Image.open(out / "grey16.tif") as g, Image.open(out / "cmyk.tif") as c:
        assert (g.mode, g.size, c.mode, c.size) == ("I;16", (64, 64), "CMYK", (64, 64))
    refused = run_cli("upscale", str(src / "multi.tif"), "-o", str(tmp_path / "png"), "--model", str(srresnet_ckpt),
                      "--format", "png", check=False)
    assert "multi.tif' has 3 pages, which only TIFF holds: use --format tiff" in refused.stderr
