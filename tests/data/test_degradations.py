"""Real-ESRGAN's degradation model (srgan_lib.data.degradations) against things outside it: kernel moments against
the covariance built by hand, the sinc kernel's frequency response (FFT), draw frequencies against the settings,
noise statistics, the JPEG round trip against Pillow's libjpeg, determinism from (seed, iteration, sample), and bad
settings refused by name."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_lib.data import degradations as dg
from srgan_lib.data.degradations import Blur, DegradationError, DegradationSettings, Noise, Resize
from tests.conftest import BENCHMARKS


def _photo(size: int = 96) -> torch.Tensor:
    with Image.open(BENCHMARKS / "Set14" / "HR" / "zebra.png") as im:
        arr = np.asarray(im.convert("RGB"))[:size, :size]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize("kind,beta", [("gaussian", 1.0), ("generalized", 2.5), ("plateau", 1.5)])
def test_kernels_sum_to_one(kind, beta):
    k = dg.gaussian_family_kernel(21, 2.0, 0.8, 0.7, kind, beta)
    assert k.shape == (21, 21) and float(k.sum()) == pytest.approx(1.0, abs=1e-6) and float(k.min()) >= 0
    assert float(dg.sinc_kernel(13, math.pi / 2).sum()) == pytest.approx(1.0, abs=1e-6)


def test_anisotropic_gaussian_moments_are_the_covariance_built_by_hand():
    sx, sy, theta = 2.0, 0.8, 0.6
    k = dg.gaussian_family_kernel(21, sx, sy, theta).double()  # +-10 px: > 5 sigma, truncation negligible
    r = torch.arange(21, dtype=torch.float64) - 10
    y, x = torch.meshgrid(r, r, indexing="ij")
    xy = float((k * x * y).sum())
    moments = [[float((k * x * x).sum()), xy], [xy, float((k * y * y).sum())]]
    c, s = math.cos(theta), math.sin(theta)
    by_hand = [[c * c * sx ** 2 + s * s * sy ** 2, c * s * (sx ** 2 - sy ** 2)],
               [c * s * (sx ** 2 - sy ** 2), s * s * sx ** 2 + c * c * sy ** 2]]
    np.testing.assert_allclose(moments, by_hand, rtol=2e-3, atol=2e-3)


def test_the_sinc_kernel_cuts_off_where_it_says():
    cutoff = math.pi / 2  # angular frequency; in cycles per pixel: 0.25
    k = dg.sinc_kernel(21, cutoff).double().numpy()
    response = np.abs(np.fft.fftshift(np.fft.fft2(k, s=(256, 256))))
    f = np.fft.fftshift(np.fft.fftfreq(256))
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fx, fy)
    assert response[radius < 0.15].min() > 0.8  # well inside the pass band
    assert response[radius > 0.32].max() < 0.5  # past the cutoff (0.25) plus the 21-tap window's transition
    assert np.median(response[(radius > 0.22) & (radius < 0.28)]) == pytest.approx(0.5, abs=0.2)


def test_draws_follow_the_settings():
    s = DegradationSettings()
    b = s.blur1
    d, _ = dg.draw(s, seed=0, iteration=1, samples=list(range(3000)))
    kinds, sizes = d.blur1.kind, d.blur1.size.tolist()
    assert set(sizes) == set(range(7, 22, 2))
    assert max(sizes.count(k) for k in set(sizes)) / min(sizes.count(k) for k in set(sizes)) < 1.3  # uniform
    assert kinds.count("sinc") / 3000 == pytest.approx(0.1, abs=0.02)
    gauss = [k for k in kinds if k != "sinc"]
    for name, p in zip(dg.KERNEL_TYPES, b.kernel_probs, strict=True):
        assert gauss.count(name) / len(gauss) == pytest.approx(p, abs=0.03), name
    assert float(d.noise1.gaussian.double().mean()) == pytest.approx(s.noise1.gaussian_prob, abs=0.03)
    assert float(d.noise2.gray.double().mean()) == pytest.approx(s.noise2.gray_prob, abs=0.03)
    assert d.blur2.kind.count("identity") / 3000 == pytest.approx(1 - s.blur2_prob, abs=0.03)
    assert d.final_sinc.kind.count("sinc") / 3000 == pytest.approx(s.final_sinc_prob, abs=0.03)
    assert set(d.jpeg1.tolist()) == set(range(30, 96))
    ways = [dg.draw(s, seed=0, iteration=i, samples=[0])[0].resize1[0] for i in range(600)]  # per batch
    up, down = sum(w > 1 for w in ways) / 600, sum(w < 1 for w in ways) / 600
    assert up == pytest.approx(s.resize1.probs[0], abs=0.05) and down == pytest.approx(s.resize1.probs[1], abs=0.05)


def test_gaussian_noise_has_its_sigma_and_gray_noise_is_per_sample():
    flat = torch.full((2, 3, 128, 128), 0.5)
    gens = [dg.sample_generator(1, 1, i) for i in range(2)]
    out = dg.gaussian_noise(flat, torch.tensor([10.0, 20.0]), torch.tensor([True, True]), gens)
    noise = (out - flat) * 255
    assert float(noise[0].std()) == pytest.approx(10.0, rel=0.03)
    assert float(noise[1].std()) == pytest.approx(20.0, rel=0.03)
    assert torch.equal(noise[0, 0], noise[0, 1]) and torch.equal(noise[0, 1], noise[0, 2])  # gray: one field
    assert not torch.allclose(noise[0, 0] / 10, noise[1, 0] / 20)  # ... of its own, not shared across the batch
    colour = dg.gaussian_noise(flat[:1], torch.tensor([10.0]), torch.tensor([False]), gens[:1]) - flat[:1]
    assert not torch.equal(colour[0, 0], colour[0, 1])


def test_poisson_noise_variance_grows_with_intensity():
    """Var = scale^2 I / L, L = 2^ceil(log2(distinct 8-bit values)) as BasicSR's generate_poisson_noise_pt: a ramp with
    all 256 levels gets L = 256; a flat image (one value) L = 1, the published chain's strong noise on flat crops."""
    ramp = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 1, 256).expand(2, 3, 256, 256).contiguous()
    gens = [dg.sample_generator(2, 1, i) for i in range(2)]
    assert dg.poisson_levels(ramp[0]) == 256 and dg.poisson_levels(torch.full((3, 8, 8), 0.5)) == 1
    out = dg.poisson_noise(ramp, torch.tensor([1.0, 2.0]), torch.tensor([False, False]), gens)
    noise = out - ramp
    for j in (26, 204):  # I = 0.1 and 0.8
        var = noise[:, :, :, j - 2:j + 3].pow(2).mean(dim=(1, 2, 3))
        intensity = float(ramp[0, 0, 0, j - 2:j + 3].mean())
        np.testing.assert_allclose(var.numpy(), np.array([1.0, 4.0]) * intensity / 256, rtol=0.06)
    gray = dg.poisson_noise(ramp[:1], torch.tensor([1.0]), torch.tensor([True]), gens[:1]) - ramp[:1]
    assert torch.equal(gray[0, 0], gray[0, 1]) and torch.equal(gray[0, 1], gray[0, 2])


def test_jpeg_is_libjpeg_as_pillow_writes_it():
    x = _photo(96)
    for q in (30, 75, 95):
        ours = (dg.jpeg(x, [q])[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray((x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(buf, "JPEG", quality=q)
        pil = np.asarray(Image.open(buf).convert("RGB"))
        diff = np.abs(ours.astype(int) - pil.astype(int))
        # the same codec (libjpeg-turbo, 4:2:0, the standard tables scaled by quality) with the pinned torchvision and
        # Pillow wheels: byte for byte the same pixels (measured: 0 difference at 30, 75 and 95)
        assert diff.max() == 0, (q, diff.mean(), diff.max())


def test_a_batch_depends_only_on_seed_iteration_and_sample():
    hr = _photo(64).repeat(3, 1, 1, 1)
    s = DegradationSettings()
    a, draws = dg.degrade_batch(hr, s, seed=5, iteration=7)
    b, _ = dg.degrade_batch(hr, s, seed=5, iteration=7)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    assert torch.equal((a * 255).round(), a * 255)  # 8-bit values
    c, _ = dg.degrade_batch(hr, s, seed=5, iteration=8)
    assert not torch.equal(a, c)
    # sample 2 of this rank is global sample 2 wherever it sits in the batch (DDP ranks pass their indices)
    d, _ = dg.degrade_batch(hr[:1], s, seed=5, iteration=7, samples=[2])
    assert torch.equal(d[0], a[2]) and draws.describe(2)["blur1"]["type"] in (*dg.KERNEL_TYPES, "sinc")
    assert not torch.equal(a[0], a[1])  # same image, different samples: different degradations


def test_usm_sharpens_edges_and_leaves_flat_areas():
    x = _photo(64)
    y = dg.usm_sharp(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) > 1e-3  # the zebra's stripes change
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(dg.usm_sharp(flat), flat)


@pytest.mark.parametrize("bad,key", [
    ({"blur1": Blur(kernel_probs=(0.5, 0.5, 0.1, 0.0, 0.0, 0.0))}, "blur1.kernel_probs"),
    ({"blur2": Blur(sigma=(-1.0, 1.0))}, "blur2.sigma"),
    ({"blur1": Blur(sizes=(8, 21))}, "blur1.sizes"),
    ({"jpeg1": (0, 95)}, "jpeg1"),
    ({"jpeg2": (30, 101)}, "jpeg2"),
    ({"resize1": Resize(probs=(0.5, 0.5, 0.5))}, "resize1.probs"),
    ({"noise2": Noise(gray_prob=1.5)}, "noise2.gray_prob"),
])
def test_bad_settings_are_refused_by_name(bad, key):
    with pytest.raises(DegradationError, match=f"'{key}'"):
        DegradationSettings(**bad)
