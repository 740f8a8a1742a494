"""Ma's score: feature extraction on inputs with known answers, the regRF forest and linear stage against hand
computation, the model file's checks, and the behaviour without the model (recorded as unavailable, never estimated)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from srgan_lib.io.images import file_sha256
from srgan_lib.metrics import ma, ma_features
from srgan_lib.metrics.psnr_ssim import matlab_luma
from tests.conftest import BENCHMARKS, run_cli

SET5 = BENCHMARKS / "Set5"  # committed


def _forest(feature: int, threshold: float, low: float, high: float, n_trees: int = 2) -> dict:
    """A regRF struct of ``n_trees`` stumps: x[feature] <= threshold -> low, else high (1-based, as MATLAB)."""
    col = np.array([[1.0], [0.0], [0.0]])
    return {
        "lDau": np.repeat(np.array([[2], [0], [0]]), n_trees, axis=1).astype(float),
        "rDau": np.repeat(np.array([[3], [0], [0]]), n_trees, axis=1).astype(float),
        "nodestatus": np.repeat(np.array([[-3], [-1], [-1]]), n_trees, axis=1).astype(float),
        "nrnodes": np.array([[3.0]]),
        "upper": np.repeat(col * threshold, n_trees, axis=1),
        "avnode": np.repeat(np.array([[0.0], [low], [high]]), n_trees, axis=1),
        "mbest": np.repeat(np.array([[feature], [0], [0]]), n_trees, axis=1).astype(float),
        "ndtree": np.full((1, n_trees), 3.0),
        "ntree": np.array([[float(n_trees)]]),
    }


def write_model(path, forests, linear) -> None:
    rf = np.empty((1, 3), dtype=object)
    for i, f in enumerate(forests):
        rf[0, i] = f
    savemat(path, {"model": {"rf": rf, "linear": np.asarray(linear, dtype=float).reshape(4, 1)}})


def test_ggd_shape_recovers_gaussian_and_laplacian():
    rng = np.random.default_rng(0)
    assert ma_features.ggd_shape(rng.normal(size=(3, 200_000))) == pytest.approx([2.0] * 3, abs=0.04)
    assert ma_features.ggd_shape(rng.laplace(size=(3, 200_000))) == pytest.approx([1.0] * 3, abs=0.03)
    # the bisection equals the authors' exhaustive nearest-entry search
    rho = np.random.default_rng(1).uniform(1.5, 30.0, 2000)
    exhaustive = ma_features._GGD_SHAPES[np.argmin(np.abs(rho[:, None] - ma_features._GGD_RHO[None, :]), axis=1)]
    np.testing.assert_array_equal(ma_features.shape_from_ratio(rho), exhaustive)


def test_coefficient_of_variation_by_hand():
    # |x| = 1, 1, 3: mean 5/3, unbiased std sqrt(4/3)
    cv = ma_features.coefficient_of_variation(np.array([[1.0, -1.0, 3.0]]))[0]
    assert cv == pytest.approx(np.sqrt(4 / 3) / (5 / 3))


def test_dct_blocks_follow_blkproc_on_a_constant_image():
    img = np.full((9, 12), 2.0)
    blocks = ma_features.dct_blocks(img)
    assert blocks.shape == (3 * 4, 7, 7)
    # orthonormal DCT: DC = sum / 7; the corner block sees 5x5 image pixels (2 rows/cols of zero padding)
    assert blocks[0, 0, 0] == pytest.approx(25 * 2.0 / 7)
    # an interior block (second row, second column) sees 7x7 image pixels and no AC energy
    inner = blocks[1 * 4 + 1]
    assert inner[0, 0] == pytest.approx(49 * 2.0 / 7)
    assert np.abs(inner.reshape(-1)[1:]).max() < 1e-12


def test_orientation_regions_are_disjoint_and_mirror():
    h, d, v = ma_features.ORIENTATION_MASKS
    assert not (h & d).any() and not (h & v).any() and not (d & v).any()
    assert (h == v.T).all()
    assert not h[0, 0] and not v[0, 0] and not d[0, 0]  # DC excluded
    assert h.sum() == v.sum() == 6 + 5 + 3 + 2


def test_svd_features_of_a_constant_image():
    feats = ma_features.svd_features(np.full((10, 15), 3.0))  # 2 x 3 patches of 25 equal values: a rank-one matrix
    assert feats.shape == (25,)
    assert feats[0] == pytest.approx(3.0 * np.sqrt(6 * 25))
    assert np.abs(feats[1:]).max() < 1e-9


def test_steerable_pyramid_constant_and_orientation():
    flat = ma_features.steerable_pyramid(np.full((64, 64), 7.0))
    assert np.abs(flat.highpass).max() < 1e-9
    assert max(np.abs(b).max() for level in flat.bands for b in level) < 1e-9
    # buildSCFpyr crops the spectrum without renormalising: the 16x16 residual carries 7 * (64*64) / (16*16)
    assert flat.lowpass.shape == (16, 16) and np.allclose(flat.lowpass, 7.0 * 16)
    yy, xx = np.mgrid[0:64, 0:64]
    for direction, expected_band in (("x", 0), ("y", 3)):
        coord = xx if direction == "x" else yy
        stripes = np.cos(2 * np.pi * coord * 12 / 64)  # 12 cycles: inside the first band's annulus
        pyr = ma_features.steerable_pyramid(stripes)
        energy = [float((np.abs(b) ** 2).sum()) for b in pyr.bands[0]]
        assert int(np.argmax(energy)) == expected_band, (direction, energy)
        assert [b.shape for b in pyr.bands[1]] == [(32, 32)] * 6


def test_feature_counts_on_a_real_image():
    from srgan_lib.io.images import read_image

    f1, f2, f3 = ma_features.ma_features(matlab_luma(read_image(SET5 / "HR" / "bird.png"), 4))
    assert (f1.size, f2.size, f3.size) == ma_features.N_FEATURES
    assert np.isfinite(np.concatenate([f1, f2, f3])).all()
    assert (f3[:-1] >= f3[1:] - 1e-9).reshape(-1)[:24].all()  # singular values of a level are sorted
    with pytest.raises(ValueError, match="at least 64x64"):
        ma_features.ma_features(np.zeros((40, 80)))


def test_forest_and_linear_stage_by_hand(tmp_path):
    path = tmp_path / "model.mat"
    write_model(path, [_forest(1, 0.5, 1.0, 3.0), _forest(2, 0.95, -1.0, 2.0), _forest(25, 1e9, 0.25, 9.0)],
                [0.5, 1.0, 2.0, 4.0])
    model = ma.load_model(path)
    assert [f.n_trees for f in model.forests] == [2, 2, 2]
    f1, f2, f3 = np.zeros(18), np.full(45, 0.99), np.zeros(75)
    f1[0] = 0.7  # > 0.5: right leaf, 3.0
    # 0.5 + 1 * 3.0 + 2 * 2.0 (0.99 > 0.95) + 4 * 0.25 = 8.5
    assert model.predict((f1, f2, f3)) == pytest.approx(8.5)
    f1[0] = 0.2
    assert model.predict((f1, f2, f3)) == pytest.approx(6.5)
    assert ma.perceptual_index(8.5, 4.0) == pytest.approx(2.75)
    # the score on an image is the same regression applied to that image's features
    img = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    feats = ma_features.ma_features(matlab_luma(img, 4))
    expected = 0.5 + (1.0 if feats[0][0] <= 0.5 else 3.0) + 2 * (-1.0 if feats[1][1] <= 0.95 else 2.0) + 4 * 0.25
    assert model.score(img, shave=4) == pytest.approx(expected)


def test_model_file_checks(tmp_path):
    with pytest.raises(ma.MaUnavailable, match=r"not found.*docs/evaluation.md"):
        ma.load_model(tmp_path / "missing.mat")
    path = tmp_path / "model.mat"
    write_model(path, [_forest(1, 0.5, 1.0, 3.0)] * 3, [0, 1, 1, 1])
    with pytest.raises(ma.MaUnavailable, match="sha256"):
        ma.load_model(path, sha256="0" * 64)
    assert ma.load_model(path, sha256=file_sha256(path)).sha256 == file_sha256(path)
    with pytest.raises(ma.MaUnavailable, match=r"needs evaluate\.ma\.sha256"):  # never downloads an unpinned file
        ma.resolve_model(str(tmp_path / "absent.mat"), None, True)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(ma.MaUnavailable, match="cannot read"):
        ma.load_model(tmp_path / "junk.mat")


def test_evaluate_records_ma_and_pi_or_their_absence(tmp_path):
    out = run_cli("evaluate", "--model", "bicubic", "--set", f"Set5={SET5}", "--json", str(tmp_path / "a.json"),
                  "--ma-model", str(tmp_path / "missing.mat"))
    res = json.loads((tmp_path / "a.json").read_text())["Set5"]
    assert "ma" not in res and "pi" not in res and "ma" not in res["images"]["baby"]
    assert "not found" in res["unavailable"]["ma"] and "Ma" in res["unavailable"]["pi"]
    assert "Ma, PI n/a" in out.stdout
    path = tmp_path / "model.mat"
    write_model(path, [_forest(1, 0.5, 1.0, 3.0)] * 3, [1.0, 1.0, 1.0, 1.0])
    run_cli("evaluate", "--model", "bicubic", "--set", f"Set5={SET5}", "--json", str(tmp_path / "b.json"),
            "--ma-model", str(path), "--ma-sha256", file_sha256(path))
    res = json.loads((tmp_path / "b.json").read_text())["Set5"]
    assert {"ma", "pi"}.isdisjoint(res["unavailable"]) and res["ma_model"]["sha256"] == file_sha256(path)
    for v in res["images"].values():
        assert v["ma"] in (4.0, 6.0, 8.0, 10.0)  # 1 + three forests of 1.0 or 3.0 each
        assert v["pi"] == pytest.approx(((10 - v["ma"]) + v["niqe"]) / 2)
    assert res["pi"] == pytest.approx(np.mean([v["pi"] for v in res["images"].values()]))
