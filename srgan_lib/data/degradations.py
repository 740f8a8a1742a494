"""Real-ESRGAN's second-order degradation model (Wang et al., ICCVW 2021, sec. 3.1-3.3) as tensor operations with
per-sample parameters (each sample runs its own chain: its resize scales give it its own intermediate size): blur
(isotropic / anisotropic / generalized / plateau Gaussian kernels and sinc), resize, Gaussian / Poisson noise, real
JPEG (libjpeg through torchvision), twice, then the final resize + sinc and JPEG in a random order. Defaults: the
published x4plus options (``../shared/DESIGN.md`` section 10).

Every draw comes from a generator seeded by (seed, iteration, sample index), so a batch depends on nothing else: the
same run gives the same batches, a resumed run continues bit-identically and DDP ranks (distinct sample indices) draw
distinct degradations. Unlike the published code, resize scales and modes and the Gaussian/Poisson choice are per
sample, and gray noise is one field per sample (the published code shares one across the batch).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL = 21  # the largest kernel side: every kernel is centred in a MAX_KERNEL square (one grouped conv)
POISSON_LEVELS = 256.0  # intensity quantisation of Poisson noise: Var = scale^2 * I / 256 (I in [0, 1])


class DegradationError(ValueError):
    """A degradation setting that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Blur:
    """One blur stage: a kernel type by its probability, or (with ``sinc_prob``) a sinc kernel."""

    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # in KERNEL_TYPES order
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1
    sizes: tuple[int, int] = (7, 21)  # odd sizes in this range, uniformly


@dataclass(frozen=True)
class Resize:
    """One resize stage: up / down / keep by probability, a scale range, modes by probability."""

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    scale: tuple[float, float] = (0.15, 1.5)
    mode_probs: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # area / bilinear / bicubic


@dataclass(frozen=True)
class Noise:
    """One noise stage: Gaussian with ``gaussian_prob`` (sigma on 0-255), else Poisson; gray with ``gray_prob``."""

    gaussian_prob: float = 0.5
    sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_prob: float = 0.4


@dataclass(frozen=True)
class DegradationSettings:
    """Real-ESRGAN x4plus's second-order degradation (train_realesrnet_x4plus.yml)."""

    scale: int = 4
    blur1: Blur = Blur()
    resize1: Resize = Resize()
    noise1: Noise = Noise()
    jpeg1: tuple[int, int] = (30, 95)
    blur2_prob: float = 0.8
    blur2: Blur = Blur(sigma=(0.2, 1.5))
    resize2: Resize = Resize(probs=(0.3, 0.4, 0.3), scale=(0.3, 1.2))
    noise2: Noise = Noise(sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5))
    jpeg2: tuple[int, int] = (30, 95)
    final_sinc_prob: float = 0.8
    sinc_first_prob: float = 0.5  # [resize + sinc] then JPEG, else JPEG then [resize + sinc]

    def __post_init__(self) -> None:
        check(self)


def _prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise DegradationError(f"'{name}': a probability in [0, 1], got {p}")


def _probs(name: str, ps: tuple[float, ...], n: int) -> None:
    if len(ps) != n or any(p < 0 for p in ps) or abs(sum(ps) - 1.0) > 1e-6:
        raise DegradationError(f"'{name}': {n} probabilities >= 0 that sum to 1, got {list(ps)}")


def _range(name: str, lo_hi: tuple[float, float], minimum: float, strict: bool = True) -> None:
    lo, hi = lo_hi
    if lo > hi or (lo <= minimum if strict else lo < minimum):
        raise DegradationError(f"'{name}': a range lo <= hi with lo {'>' if strict else '>='} {minimum}, got "
                               f"{list(lo_hi)}")


def check(s: DegradationSettings) -> None:
    """Refuse impossible settings before anything runs, naming the setting."""
    for stage in ("blur1", "blur2"):
        b: Blur = getattr(s, stage)
        _probs(f"{stage}.kernel_probs", b.kernel_probs, len(KERNEL_TYPES))
        _range(f"{stage}.sigma", b.sigma, 0.0)
        _range(f"{stage}.betag", b.betag, 0.0)
        _range(f"{stage}.betap", b.betap, 0.0)
        _prob(f"{stage}.sinc_prob", b.sinc_prob)
        lo, hi = b.sizes
        if lo % 2 == 0 or hi % 2 == 0 or not 3 <= lo <= hi <= MAX_KERNEL:
            raise DegradationError(f"'{stage}.sizes': odd kernel sizes 3 <= lo <= hi <= {MAX_KERNEL}, got {[lo, hi]}")
    for stage in ("resize1", "resize2"):
        r: Resize = getattr(s, stage)
        _probs(f"{stage}.probs", r.probs, 3)
        _probs(f"{stage}.mode_probs", r.mode_probs, 3)
        _range(f"{stage}.scale", r.scale, 0.0)
    for stage in ("noise1", "noise2"):
        n: Noise = getattr(s, stage)
        _prob(f"{stage}.gaussian_prob", n.gaussian_prob)
        _prob(f"{stage}.gray_prob", n.gray_prob)
        _range(f"{stage}.sigma", n.sigma, 0.0, strict=False)
        _range(f"{stage}.poisson_scale", n.poisson_scale, 0.0, strict=False)
    for stage in ("jpeg1", "jpeg2"):
        lo, hi = getattr(s, stage)
        if not 1 <= lo <= hi <= 100:
            raise DegradationError(f"'{stage}': JPEG qualities 1 <= lo <= hi <= 100, got {[lo, hi]}")
    for name in ("blur2_prob", "final_sinc_prob", "sinc_first_prob"):
        _prob(name, getattr(s, name))
    if s.scale not in (1, 2, 4, 8):
        raise DegradationError(f"'scale': 1, 2, 4 or 8, got {s.scale}")


# ------------------------------------------------------------------------------------------------------------- draws
def sample_generator(seed: int, iteration: int, sample: int) -> torch.Generator:
    """The random generator of one sample of one iteration: seeded from (seed, iteration, sample) only."""
    digest = hashlib.blake2b(f"{seed}/{iteration}/{sample}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, probs: tuple[float, ...]) -> int:
    return int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=g))


# ----------------------------------------------------------------------------------------------------------- kernels
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.meshgrid(r, r, indexing="ij")  # (y, x)


def covariance(sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """R diag(sigma_x^2, sigma_y^2) R^T, R the rotation by ``theta`` (the anisotropic kernel's covariance in (x, y))."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T


def gaussian_family_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, kind: str = "gaussian",
                           beta: float = 1.0) -> torch.Tensor:
    """A size x size kernel summing to 1: Gaussian exp(-q/2), generalized exp(-(q)^beta / 2) (BasicSR's form,
    exp(-0.5 (x^T S^-1 x)^beta)) or plateau 1 / (1 + q^beta), with q = x^T S^-1 x for the covariance S."""
    y, x = _grid(size)
    inv = torch.linalg.inv(covariance(sigma_x, sigma_y, theta))
    q = inv[0, 0] * x * x + 2 * inv[0, 1] * x * y + inv[1, 1] * y * y
    if kind == "gaussian":
        k = torch.exp(-0.5 * q)
    elif kind == "generalized":
        k = torch.exp(-0.5 * q.clamp(min=0) ** beta)
    elif kind == "plateau":
        k = 1.0 / (1.0 + q.clamp(min=0) ** beta)
    else:
        raise DegradationError(f"unknown kernel kind {kind!r}")
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """The circular low-pass (2-D sinc) kernel of angular cutoff ``cutoff`` (radians/pixel), size x size, sum 1:
    k(r) = cutoff J1(cutoff r) / (2 pi r), with its limit cutoff^2 / (4 pi) at r = 0."""
    y, x = _grid(size)
    r = torch.sqrt(x * x + y * y)
    k = torch.where(r == 0, torch.full_like(r, cutoff ** 2 / (4 * math.pi)),
                    cutoff * torch.special.bessel_j1(cutoff * r) / (2 * math.pi * r.clamp(min=1e-12)))
    return (k / k.sum()).float()


def random_blur_kernel(b: Blur, g: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
    """One blur stage's kernel for one sample, and what was drawn (for logs and previews)."""
    size = 2 * int(torch.randint((b.sizes[0] - 1) // 2, (b.sizes[1] - 1) // 2 + 1, (), generator=g)) + 1
    if float(torch.rand((), generator=g)) < b.sinc_prob:
        cutoff = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff), {"type": "sinc", "size": size, "cutoff": round(cutoff, 4)}
    kind = KERNEL_TYPES[_choice(g, b.kernel_probs)]
    sx = _u(g, *b.sigma)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy, theta = (sx, 0.0) if iso else (_u(g, *b.sigma), _u(g, -math.pi, math.pi))
    family = kind.split("_")[0] if "_" in kind else "gaussian"
    beta = _u(g, *b.betag) if family == "generalized" else _u(g, *b.betap) if family == "plateau" else 1.0
    drawn = {"type": kind, "size": size, "sigma": [round(sx, 4), round(sy, 4)], "theta": round(theta, 4)}
    if family != "gaussian":
        drawn["beta"] = round(beta, 4)
    return gaussian_family_kernel(size, sx, sy, theta, family, beta), drawn


def filter_batch(x: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
    """Each sample of ``x`` (B, C, H, W) convolved with its own kernel (any odd sizes up to MAX_KERNEL), reflect-
    padded: one grouped convolution for the batch."""
    b, c, h, w = x.shape
    weight = torch.zeros(b, 1, MAX_KERNEL, MAX_KERNEL, dtype=x.dtype, device=x.device)
    for i, k in enumerate(kernels):
        o = (MAX_KERNEL - k.shape[-1]) // 2
        weight[i, 0, o:o + k.shape[-1], o:o + k.shape[-1]] = k.to(x)
    pad = MAX_KERNEL // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode).reshape(1, b * c, h + 2 * pad, w + 2 * pad)
    out = F.conv2d(xp, weight.repeat_interleave(c, dim=0), groups=b * c)
    return out.reshape(b, c, h, w)


# ------------------------------------------------------------------------------------------------------------ noise
def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor,
                   gens: list[torch.Generator]) -> torch.Tensor:
    """Additive Gaussian noise, ``sigma`` per sample on the 0-255 scale; a gray sample gets one field for all its
    channels, a colour sample one per channel."""
    b, c, h, w = x.shape
    noise = torch.stack([torch.randn((1 if gray[i] else c, h, w), generator=gens[i]).expand(c, h, w)
                         for i in range(b)]).to(x)
    return x + noise * (sigma.to(x) / 255.0).view(b, 1, 1, 1)


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor,
                  gens: list[torch.Generator]) -> torch.Tensor:
    """Poisson (shot) noise, ``scale`` per sample: (Poisson(I * 256) / 256 - I) * scale, so Var = scale^2 I / 256;
    a gray sample draws it on its luma (BT.601) and adds the same field to every channel."""
    out = []
    for i in range(x.shape[0]):
        img = x[i].clamp(0, 1).double()
        base = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0) if gray[i] else img
        shot = torch.poisson(base * POISSON_LEVELS, generator=gens[i]) / POISSON_LEVELS - base
        out.append(x[i] + (shot * float(scale[i])).to(x).expand_as(x[i]))
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------------------- JPEG
def jpeg(x: torch.Tensor, quality: list[int]) -> torch.Tensor:
    """A real JPEG round trip per sample (libjpeg through torchvision.io on CPU; 4:2:0 chroma as Pillow's default),
    at its own quality: the codec's rounding and blocks, not an approximation of them."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    out = [decode_jpeg(encode_jpeg(u8[i], quality=int(quality[i]))) for i in range(u8.shape[0])]
    return torch.stack(out).to(x.device, x.dtype) / 255.0


# ------------------------------------------------------------------------------------------------------------- chain
def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def _resize(x: torch.Tensor, r: Resize, g: torch.Generator, base: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Up / down / keep by the stage's probabilities, relative to ``base`` (H, W), in a drawn mode."""
    way = _choice(g, r.probs)
    s = _u(g, 1.0, r.scale[1]) if way == 0 else _u(g, r.scale[0], 1.0) if way == 1 else 1.0
    mode = RESIZE_MODES[_choice(g, r.mode_probs)]
    return _interp(x, (int(base[0] * s), int(base[1] * s)), mode), {"scale": round(s, 4), "mode": mode}


def _noise(x: torch.Tensor, n: Noise, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    is_gauss = float(torch.rand((), generator=g)) < n.gaussian_prob
    value = _u(g, *n.sigma) if is_gauss else _u(g, *n.poisson_scale)
    gray = torch.tensor([float(torch.rand((), generator=g)) < n.gray_prob])
    add = gaussian_noise if is_gauss else poisson_noise
    return add(x, torch.tensor([value]), gray, [g]), {"noise": "gaussian" if is_gauss else "poisson",
                                                       "value": round(value, 4), "gray": bool(gray[0])}


def _blur(x: torch.Tensor, b: Blur, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    k, drawn = random_blur_kernel(b, g)
    return filter_batch(x, [k]), drawn


def degrade_one(hr: torch.Tensor, s: DegradationSettings, g: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
    """One HR sample (1, 3, H, W) in [0, 1] through the second-order chain with the generator ``g``: the LR
    (1, 3, H/scale, W/scale), 8-bit values, and what was drawn."""
    h, w = hr.shape[-2:]
    lr_hw = (h // s.scale, w // s.scale)
    log: dict[str, Any] = {}
    x, log["blur1"] = _blur(hr, s.blur1, g)
    x, log["resize1"] = _resize(x, s.resize1, g, (h, w))
    x, log["noise1"] = _noise(x, s.noise1, g)
    log["jpeg1"] = int(torch.randint(s.jpeg1[0], s.jpeg1[1] + 1, (), generator=g))
    x = jpeg(x, [log["jpeg1"]])
    if float(torch.rand((), generator=g)) < s.blur2_prob:
        x, log["blur2"] = _blur(x, s.blur2, g)
    else:
        log["blur2"] = None
    x, log["resize2"] = _resize(x, s.resize2, g, lr_hw)  # relative to the LR size, as the published chain
    x, log["noise2"] = _noise(x, s.noise2, g)
    sinc = None
    if float(torch.rand((), generator=g)) < s.final_sinc_prob:
        size = 2 * int(torch.randint(3, 11, (), generator=g)) + 1
        cutoff = _u(g, math.pi / 3, math.pi)
        sinc, log["final_sinc"] = sinc_kernel(size, cutoff), {"size": size, "cutoff": round(cutoff, 4)}
    else:
        log["final_sinc"] = None
    mode = RESIZE_MODES[int(torch.randint(0, 3, (), generator=g))]
    quality = int(torch.randint(s.jpeg2[0], s.jpeg2[1] + 1, (), generator=g))
    sinc_first = float(torch.rand((), generator=g)) < s.sinc_first_prob
    log.update(final_mode=mode, jpeg2=quality, order="resize+sinc, jpeg" if sinc_first else "jpeg, resize+sinc")

    def resize_sinc(y: torch.Tensor) -> torch.Tensor:
        y = _interp(y, lr_hw, mode)
        return y if sinc is None else filter_batch(y, [sinc])

    x = jpeg(resize_sinc(x), [quality]) if sinc_first else resize_sinc(jpeg(x, [quality]))
    return (x.clamp(0, 1) * 255.0).round() / 255.0, log


def degrade_batch(hr: torch.Tensor, s: DegradationSettings, seed: int, iteration: int,
                  samples: list[int] | None = None) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """HR (B, 3, H, W) in [0, 1] -> LR (B, 3, H/scale, W/scale) in [0, 1] (8-bit values) and the draws per sample.
    Sample i's degradation depends only on (seed, iteration, samples[i]) (default samples: 0..B-1; DDP ranks pass
    their global indices). Each sample runs its own chain (its resize scales give it its own intermediate size)."""
    samples = list(range(hr.shape[0])) if samples is None else list(samples)
    if len(samples) != hr.shape[0]:
        raise DegradationError(f"{len(samples)} sample indices for a batch of {hr.shape[0]}")
    outs, logs = [], []
    for i, index in enumerate(samples):
        lr, log = degrade_one(hr[i:i + 1], s, sample_generator(seed, iteration, index))
        outs.append(lr)
        logs.append(log)
    return torch.cat(outs), logs


# -------------------------------------------------------------------------------------------------------------- USM
def usm_sharp(x: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> torch.Tensor:
    """Unsharp-masked targets (Real-ESRGAN's USMSharp): img + weight (img - blur) where |img - blur| * 255 >
    threshold, blended through a blurred mask; radius 50 -> a 101-tap Gaussian with OpenCV's sigma for that size."""
    size = 2 * radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    r = torch.arange(size, dtype=torch.float64) - radius
    k1 = torch.exp(-0.5 * (r / sigma) ** 2)
    k1 = (k1 / k1.sum()).to(x)

    def blur(y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        pad = min(radius, y.shape[-1] - 1, y.shape[-2] - 1)
        k = k1[radius - pad:radius + pad + 1]
        k = k / k.sum()
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                        groups=c)

    residual = x - blur(x)
    mask = (residual.abs() * 255 > threshold).to(x)
    soft = blur(mask)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x
