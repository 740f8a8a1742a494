"""Reading every image mode a user may have into RGB, and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from srgan_lib.io import images as imageio
from srgan_lib.io.images import ImageReadError, iter_image_files, read_image, write_png


def test_truncated_png_names_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"truncated\.png") as exc:
        read_image(bad)
    assert "re-export it or remove it" in str(exc.value)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        read_image(junk)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "absent.png")


def test_single_channel_png_is_replicated(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    rgb = read_image(tmp_path / "l.png")
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


def test_16bit_png_scales_to_8bit_not_clips(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_rgba_png_composited_dropped_or_refused(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (200, 100, 0, 128)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent pixel: its stored colour is meaningless
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png").astype(int)
    a = 128 / 255
    expected = np.round(np.array([200, 100, 0]) * a + 255 * (1 - a))
    np.testing.assert_allclose(out[1, 1], expected, atol=1)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # transparent -> the white background
    dropped = read_image(tmp_path / "a.png", alpha="drop")
    np.testing.assert_array_equal(dropped[1, 1], [200, 100, 0])
    black = read_image(tmp_path / "a.png", background=(0, 0, 0))
    np.testing.assert_array_equal(black[0, 0], [0, 0, 0])
    with pytest.raises(ImageReadError, match="alpha"):
        read_image(tmp_path / "a.png", alpha="error")


def test_la_and_palette_with_transparency(tmp_path):
    la = Image.fromarray(np.dstack([np.full((4, 4), 50, np.uint8), np.full((4, 4), 255, np.uint8)]), mode="LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[0, 0], [50, 50, 50])
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[1, 1], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # the transparent index -> background


def test_exif_rotated_jpeg_is_shown_upright(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg").astype(int)
    assert out.shape == (40, 20, 3)  # displayed 20 wide x 40 high
    # rotating clockwise puts the stored left (red) half on top
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    out = read_image(tmp_path / "c.jpg").astype(int)
    assert out.shape == (8, 8, 3)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60 and out[4, 4, 2] < 60


def test_write_png_is_atomic(tmp_path, monkeypatch):
    img = np.full((8, 8, 3), 7, np.uint8)
    target = tmp_path / "out" / "x.png"
    write_png(target, img)
    np.testing.assert_array_equal(read_image(target), img)
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.png"]

    def crash(self, fp, *args, **kwargs):  # a writer killed half-way: some bytes written, then failure
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OSError):
        write_png(tmp_path / "out" / "new.png", img)
    monkeypatch.undo()
    # the earlier complete file is untouched, no half-written file appears under either name, no temp file remains
    np.testing.assert_array_equal(read_image(target), img)
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.png"]


def test_iter_image_files_is_sorted_and_filtered(tmp_path):
    for rel in ["b/2.png", "a/1.JPG", "c.txt", ".hidden.png", "a/0.webp"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a/0.webp", "a/1.JPG", "b/2.png"]
    assert imageio.is_image_file(tmp_path / "a" / "1.JPG")
