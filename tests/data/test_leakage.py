"""Test-set leakage: copies of Set5/Set14 images in another form (resized, JPEG, grey, flipped, rotated, cropped both
ways, pasted into another photograph) are found and rejected by the lists stage; real SR training photographs
(the shared T91 / BSD200 / BSDS500 / wallpapers) are not."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_lib.data.leakage import CROP_THRESHOLD, THUMB_THRESHOLD, LeakageIndex
from srgan_lib.data.lists import build_lists
from srgan_lib.io.images import read_image
from tests.conftest import BENCHMARKS, REPO

# the same photograph twice in the classic sets: Set5 head is Set14 face, Set5 butterfly a crop of Set14 monarch
SAME = [{"Set5/head", "Set14/face"}, {"Set5/butterfly", "Set14/monarch"}]


def _tests() -> dict[str, np.ndarray]:
    return {f"{s}/{p.stem}": read_image(p) for s in ("Set5", "Set14")
            for p in sorted((BENCHMARKS / s / "HR").glob("*.png"))}


@pytest.fixture(scope="module")
def index() -> LeakageIndex:
    idx = LeakageIndex()
    for name, rgb in _tests().items():
        idx.add(name, rgb)
    return idx


def _resize(a: np.ndarray, f: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((round(a.shape[1] * f), round(a.shape[0] * f)), Image.BICUBIC))


def _jpeg(a: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _dihedral(a: np.ndarray, k: int) -> np.ndarray:
    a = a.transpose(1, 0, 2) if k & 4 else a
    a = a[:, ::-1] if k & 1 else a
    return np.ascontiguousarray(a[::-1] if k & 2 else a)


def _disguises(name: str, img: np.ndarray, rng: np.random.Generator, background: np.ndarray) -> dict[str, np.ndarray]:
    """Four ways a test image reaches a training folder."""
    h, w = img.shape[:2]
    grey = _jpeg(_resize(_dihedral(img, int(rng.integers(8))), rng.uniform(0.5, 2.0)), 70).mean(2, keepdims=True)
    pasted = _resize(_dihedral(img, int(rng.integers(8))), rng.uniform(0.6, 1.2))
    f = rng.uniform(0.55, 0.95)
    canvas = np.asarray(Image.fromarray(background).resize(
        (int(pasted.shape[1] / f), int(pasted.shape[0] / rng.uniform(0.55, 1.0))), Image.BICUBIC)).copy()
    y = int(rng.integers(canvas.shape[0] - pasted.shape[0] + 1))
    x = int(rng.integers(canvas.shape[1] - pasted.shape[1] + 1))
    canvas[y:y + pasted.shape[0], x:x + pasted.shape[1]] = pasted
    ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    patch = _resize(_dihedral(img[y:y + ch, x:x + cw], int(rng.integers(8))), rng.uniform(0.6, 1.4))
    return {"resized grey JPEG copy": np.repeat(grey.astype(np.uint8), 3, axis=2),
            "pasted into a photograph": _jpeg(canvas, 85),
            "crop of it": patch,
            "slightly cropped copy": _resize(_dihedral(img[int(h * .03):int(h * .97), int(w * .02):int(w * .98)],
                                                       int(rng.integers(8))), rng.uniform(0.6, 1.5))}


def test_disguised_test_images_are_found(index):
    rng = np.random.default_rng(0)
    background = read_image(BENCHMARKS / "Set14" / "HR" / "baboon.png")  # texture around the pasted image
    found, total, scores = 0, 0, []
    for name, img in _tests().items():
        if name == "Set14/baboon":
            continue
        for how, disguised in _disguises(name, img, rng, background).items():
            leak = index.match(disguised)
            total += 1
            ok = leak is not None and (leak.test == name or {leak.test, name} in SAME)
            found += ok
            assert ok, f"{name} {how}: {leak}"
            scores.append(leak.score)
    print(f"{found}/{total} disguised test images found; lowest score {min(scores):.3f} "
          f"(thresholds: whole {THUMB_THRESHOLD}, crop {CROP_THRESHOLD})")


def test_real_training_photographs_are_not_test_images(index):
    rng = np.random.default_rng(1)
    files = sorted((REPO / "data" / "train").glob("*/*.png"))  # the committed training photographs (T91, wallpapers)
    assert len(files) >= 100
    sample = [files[i] for i in rng.choice(len(files), size=30, replace=False)]
    worst = 0.0
    for path in sample:
        whole, crop = index.closest(read_image(path))
        assert index.decide(whole, crop) is None, f"{path}: {whole} {crop}"
        worst = max(worst, crop.score if crop else 0.0)
    print(f"30 shared training photographs: best crop match {worst:.3f} (threshold {CROP_THRESHOLD})")


def test_lists_stage_rejects_disguised_copies_and_reports_them(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    for p in sorted((BENCHMARKS.parent / "train" / "T91").glob("*.png"))[:6]:  # the committed T91 photographs
        Image.open(p).save(train / p.name)
    bird = read_image(BENCHMARKS / "Set5" / "HR" / "bird.png")
    Image.fromarray(_jpeg(_resize(bird[:, ::-1], 0.7), 80)).save(train / "bird_flipped_small.jpg")
    baboon = read_image(BENCHMARKS / "Set14" / "HR" / "baboon.png")
    Image.fromarray(np.ascontiguousarray(baboon[100:420, 60:400].transpose(1, 0, 2))).save(train / "patch.png")
    results = build_lists([train], {"Set5": BENCHMARKS / "Set5", "Set14": BENCHMARKS / "Set14"}, tmp_path / "lists",
                          min_size=64)
    rejects = {Path(r.path).name: r for r in results["train"].rejected}
    assert set(rejects) == {"bird_flipped_small.jpg", "patch.png"}
    assert all(r.reason == "test_leakage" for r in rejects.values())
    assert "Set5/bird" in rejects["bird_flipped_small.jpg"].detail
    assert "Set14/baboon" in rejects["patch.png"].detail and "crop" in rejects["patch.png"].detail
    assert len(results["train"].images) == 6
    report = json.loads((tmp_path / "lists" / "rejects.json").read_text())
    assert {Path(r["path"]).name for r in report["train"]} == set(rejects)
    exact = build_lists([train], {"Set5": BENCHMARKS / "Set5"}, tmp_path / "exact", min_size=64, leakage="exact")
    assert len(exact["train"].images) == 8  # identical pixels only: the disguised copies pass
