"""Real-ESRGAN's second-order degradation model (Wang et al., ICCVW 2021, sec. 3.1-3.3) as batched tensor operations
with per-sample parameters: blur (isotropic / anisotropic / generalized / plateau Gaussian kernels and sinc, one
grouped convolution for the batch), resize, Gaussian / Poisson noise, real JPEG (libjpeg through torchvision), twice,
then the final resize + sinc and JPEG in a random order. Defaults: the published x4plus options
(``../shared/DESIGN.md`` section 10).

Every per-sample draw comes from a generator seeded by (seed, iteration, sample index), the batch-level ones (resize
scales and modes, the final order: per batch as in the published code, so the batch stays one tensor) from (seed,
iteration): a batch depends on nothing else, a resumed run continues bit-identically and DDP ranks (distinct sample
indices, shared batch-level draws) draw what one process would. Unlike the published code, the Gaussian / Poisson
choice is per sample, and gray noise is one field per sample (the published code shares one across the batch).
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
    """The random generator of one sample of one iteration: seeded from (seed, iteration, sample) only (sample -1:
    the batch-level draws, which every DDP rank shares)."""
    digest = hashlib.blake2b(f"{seed}/{iteration}/{sample}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


# where each per-sample draw sits in a sample's vector of uniforms (one generator call per sample)
_BLUR_KEYS = ("size", "sinc", "cutoff", "kind", "sigma_x", "sigma_y", "theta", "beta")
_SLOT = {**{f"blur1.{k}": i for i, k in enumerate(_BLUR_KEYS)},
         **{f"blur2.{k}": 8 + i for i, k in enumerate(_BLUR_KEYS)},
         "blur2.on": 16, "noise1.gaussian": 17, "noise1.value": 18, "noise1.gray": 19, "noise2.gaussian": 20,
         "noise2.value": 21, "noise2.gray": 22, "jpeg1": 23, "jpeg2": 24, "final.on": 25, "final.size": 26,
         "final.cutoff": 27}
N_SLOTS = 28
FAMILIES = ("gaussian", "generalized", "plateau", "sinc", "identity")  # kernel family codes 0..4


def _span(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def _pick(u: torch.Tensor, probs: tuple[float, ...]) -> torch.Tensor:
    """Index i with probability probs[i], for each uniform of ``u``."""
    edges = torch.tensor(probs, dtype=torch.float64).cumsum(0)[:-1]
    return torch.bucketize(u.contiguous(), edges, right=True)


def _odd(u: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """An odd size in [lo, hi], uniformly."""
    n = (hi - lo) // 2 + 1
    return lo + 2 * (u * n).long().clamp(max=n - 1)


@dataclass(frozen=True)
class KernelDraws:
    """One blur stage's per-sample draws: family code (FAMILIES), odd size, sigmas, angle, shape, sinc cutoff."""

    family: torch.Tensor
    size: torch.Tensor
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    theta: torch.Tensor
    beta: torch.Tensor
    cutoff: torch.Tensor
    kind: list[str]  # KERNEL_TYPES, 'sinc' or 'identity', for logs


def _blur_draws(b: Blur, u: torch.Tensor, on: torch.Tensor | None = None) -> KernelDraws:
    """Per-sample kernels of one blur stage from the uniforms ``u`` (B, 8) (``_BLUR_KEYS`` order), as the published
    ``random_mixed_kernels`` draws them: size, then sinc (cutoff in [pi/3, pi] below size 13, else [pi/5, pi]) or a
    Gaussian-family type, sigmas, angle and shape; ``on`` False gives the identity."""
    size = _odd(u[:, 0], *b.sizes)
    sinc = u[:, 1] < b.sinc_prob
    cutoff = torch.where(size < 13, _span(u[:, 2], math.pi / 3, math.pi), _span(u[:, 2], math.pi / 5, math.pi))
    kind = _pick(u[:, 3], b.kernel_probs)  # index into KERNEL_TYPES
    iso = kind % 2 == 0  # KERNEL_TYPES alternates iso, aniso
    family = torch.div(kind, 2, rounding_mode="floor")  # (iso, aniso) pairs: 0 gaussian, 1 generalized, 2 plateau
    sx = _span(u[:, 4], *b.sigma)
    sy = torch.where(iso, sx, _span(u[:, 5], *b.sigma))
    theta = torch.where(iso, torch.zeros_like(sx), _span(u[:, 6], -math.pi, math.pi))
    beta = torch.where(family == 1, _span(u[:, 7], *b.betag),
                       torch.where(family == 2, _span(u[:, 7], *b.betap), torch.ones_like(sx)))
    family = torch.where(sinc, torch.full_like(family, 3), family)
    if on is not None:
        family = torch.where(on, family, torch.full_like(family, 4))
    names = ["identity" if f == 4 else "sinc" if f == 3 else KERNEL_TYPES[int(k)] for f, k in zip(family, kind,
                                                                                                      strict=True)]
    return KernelDraws(family, size, sx, sy, theta, beta, cutoff, names)


def _final_sinc_draws(s: DegradationSettings, u: torch.Tensor) -> KernelDraws:
    """The final sinc filter per sample (size 7-21, cutoff in [pi/3, pi]), or the identity."""
    on = u[:, _SLOT["final.on"]] < s.final_sinc_prob
    size = _odd(u[:, _SLOT["final.size"]], 7, 21)
    cutoff = _span(u[:, _SLOT["final.cutoff"]], math.pi / 3, math.pi)
    family = torch.where(on, torch.full_like(size, 3), torch.full_like(size, 4))
    one = torch.ones_like(cutoff)
    return KernelDraws(family, size, one, one, 0 * one, one, cutoff, ["sinc" if o else "identity" for o in on])


@dataclass(frozen=True)
class NoiseDraws:
    """One noise stage's per-sample draws: Gaussian (else Poisson), sigma (0-255) or Poisson scale, gray."""

    gaussian: torch.Tensor
    value: torch.Tensor
    gray: torch.Tensor


def _noise_draws(n: Noise, u: torch.Tensor) -> NoiseDraws:
    gaussian = u[:, 0] < n.gaussian_prob
    value = torch.where(gaussian, _span(u[:, 1], *n.sigma), _span(u[:, 1], *n.poisson_scale))
    return NoiseDraws(gaussian, value, u[:, 2] < n.gray_prob)


@dataclass(frozen=True)
class Draws:
    """Everything one batch's degradation drew: per-sample kernels, noise and JPEG qualities; per batch (as the
    published chain, so one resize keeps the batch one tensor) the resize scales and modes and the final order."""

    blur1: KernelDraws
    blur2: KernelDraws
    noise1: NoiseDraws
    noise2: NoiseDraws
    jpeg1: torch.Tensor
    jpeg2: torch.Tensor
    final_sinc: KernelDraws
    resize1: tuple[float, str]
    resize2: tuple[float, str]
    final_mode: str
    sinc_first: bool

    def describe(self, i: int) -> dict[str, Any]:
        """Sample ``i``'s draws, rounded, for logs and preview captions."""

        def kernel(k: KernelDraws) -> dict[str, Any] | None:
            f = int(k.family[i])
            if f == 4:
                return None
            out: dict[str, Any] = {"type": k.kind[i], "size": int(k.size[i])}
            if f == 3:
                out["cutoff"] = round(float(k.cutoff[i]), 3)
            else:
                out.update(sigma=[round(float(k.sigma_x[i]), 2), round(float(k.sigma_y[i]), 2)],
                           theta=round(float(k.theta[i]), 2))
                if f in (1, 2):
                    out["beta"] = round(float(k.beta[i]), 2)
            return out

        def noise(n: NoiseDraws) -> dict[str, Any]:
            return {"noise": "gaussian" if n.gaussian[i] else "poisson", "value": round(float(n.value[i]), 2),
                    "gray": bool(n.gray[i])}

        return {"blur1": kernel(self.blur1), "resize1": {"scale": round(self.resize1[0], 3), "mode": self.resize1[1]},
                "noise1": noise(self.noise1), "jpeg1": int(self.jpeg1[i]), "blur2": kernel(self.blur2),
                "resize2": {"scale": round(self.resize2[0], 3), "mode": self.resize2[1]}, "noise2": noise(self.noise2),
                "final_sinc": kernel(self.final_sinc), "final_mode": self.final_mode, "jpeg2": int(self.jpeg2[i]),
                "order": "resize+sinc, jpeg" if self.sinc_first else "jpeg, resize+sinc"}

    def caption(self, i: int) -> str:
        """Sample ``i``'s draws in one short line per stage (preview pictures)."""

        def k(kd: KernelDraws) -> str:
            f = int(kd.family[i])
            if f == 4:
                return "-"
            if f == 3:
                return f"sinc{int(kd.size[i])} w{float(kd.cutoff[i]):.2f}"
            return f"{kd.kind[i]}{int(kd.size[i])} s{float(kd.sigma_x[i]):.1f}/{float(kd.sigma_y[i]):.1f}"

        def n(nd: NoiseDraws) -> str:
            g = "g" if nd.gray[i] else "c"
            return f"{'gauss' if nd.gaussian[i] else 'poiss'}{g} {float(nd.value[i]):.1f}"

        return (f"1: {k(self.blur1)} x{self.resize1[0]:.2f} {n(self.noise1)} q{int(self.jpeg1[i])}\n"
                f"2: {k(self.blur2)} x{self.resize2[0]:.2f} {n(self.noise2)} q{int(self.jpeg2[i])} "
                f"{k(self.final_sinc)} {'S>J' if self.sinc_first else 'J>S'}")

    def summary(self) -> dict[str, float]:
        """Counts and means over the batch, for MLflow (how often each kernel type, noise and order was drawn)."""
        out: dict[str, float] = {}
        for stage in ("blur1", "blur2", "final_sinc"):
            kinds: list[str] = getattr(self, stage).kind
            for name in sorted(set(kinds)):
                out[f"{stage}.{name}"] = kinds.count(name) / len(kinds)
        for stage in ("noise1", "noise2"):
            n: NoiseDraws = getattr(self, stage)
            out[f"{stage}.gaussian"] = float(n.gaussian.double().mean())
            out[f"{stage}.gray"] = float(n.gray.double().mean())
        out.update({"jpeg1.mean": float(self.jpeg1.double().mean()), "jpeg2.mean": float(self.jpeg2.double().mean()),
                    "resize1.scale": self.resize1[0], "resize2.scale": self.resize2[0],
                    "sinc_first": float(self.sinc_first)})
        return out


def _resize_draw(r: Resize, u: torch.Tensor) -> tuple[float, str]:
    """Up / down / keep by the stage's probabilities, a scale in that direction, a mode (3 uniforms)."""
    way = int(_pick(u[0], r.probs))
    scale = float(_span(u[1], 1.0, r.scale[1])) if way == 0 else float(_span(u[1], r.scale[0], 1.0)) if way == 1 \
        else 1.0
    return scale, RESIZE_MODES[int(_pick(u[2], r.mode_probs))]


def draw(s: DegradationSettings, seed: int, iteration: int, samples: list[int]) -> tuple[Draws, list[torch.Generator]]:
    """The draws of a batch whose samples have the global indices ``samples``, and each sample's generator (its
    noise fields come next from it). Sample i's draws depend only on (seed, iteration, samples[i]); the batch-level
    ones on (seed, iteration)."""
    gens = [sample_generator(seed, iteration, i) for i in samples]
    u = torch.stack([torch.rand(N_SLOTS, generator=g, dtype=torch.float64) for g in gens])
    ub = torch.rand(8, generator=sample_generator(seed, iteration, -1), dtype=torch.float64)

    def cols(stage: str) -> torch.Tensor:
        return u[:, [_SLOT[f"{stage}.{k}"] for k in _BLUR_KEYS]]

    def noise_cols(stage: str) -> torch.Tensor:
        return u[:, [_SLOT[f"{stage}.{k}"] for k in ("gaussian", "value", "gray")]]

    def quality(slot: str, lo_hi: tuple[int, int]) -> torch.Tensor:
        return lo_hi[0] + (u[:, _SLOT[slot]] * (lo_hi[1] - lo_hi[0] + 1)).long().clamp(max=lo_hi[1] - lo_hi[0])

    draws = Draws(
        blur1=_blur_draws(s.blur1, cols("blur1")),
        blur2=_blur_draws(s.blur2, cols("blur2"), on=u[:, _SLOT["blur2.on"]] < s.blur2_prob),
        noise1=_noise_draws(s.noise1, noise_cols("noise1")), noise2=_noise_draws(s.noise2, noise_cols("noise2")),
        jpeg1=quality("jpeg1", s.jpeg1), jpeg2=quality("jpeg2", s.jpeg2), final_sinc=_final_sinc_draws(s, u),
        resize1=_resize_draw(s.resize1, ub[0:3]), resize2=_resize_draw(s.resize2, ub[3:6]),
        final_mode=RESIZE_MODES[int(ub[6] * 3) % 3], sinc_first=bool(ub[7] < s.sinc_first_prob))
    return draws, gens


# ----------------------------------------------------------------------------------------------------------- kernels
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.meshgrid(r, r, indexing="ij")  # (y, x)


def covariance(sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """R diag(sigma_x^2, sigma_y^2) R^T, R the rotation by ``theta`` (the anisotropic kernel's covariance in (x, y))."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T


def kernels(k: KernelDraws) -> torch.Tensor:
    """The (B, MAX_KERNEL, MAX_KERNEL) kernels of the draws, all at once, each centred, zero outside its own size,
    summing to 1: Gaussian exp(-q/2), generalized exp(-q^beta / 2) (BasicSR's form), plateau 1 / (1 + q^beta), with
    q = x^T S^-1 x for S = R diag(sigma_x^2, sigma_y^2) R^T; sinc cutoff J1(cutoff r) / (2 pi r) (limit cutoff^2 /
    (4 pi) at r = 0); identity a unit impulse."""
    y, x = (t[None] for t in _grid(MAX_KERNEL))
    c, s = torch.cos(k.theta)[:, None, None], torch.sin(k.theta)[:, None, None]
    u, v = c * x + s * y, -s * x + c * y  # coordinates along the rotated axes
    q = (u / k.sigma_x[:, None, None]) ** 2 + (v / k.sigma_y[:, None, None]) ** 2
    beta = k.beta[:, None, None]
    r = torch.sqrt(x * x + y * y).expand_as(q)
    f = k.family[:, None, None]
    out = (r == 0).double().expand_as(q).clone()  # identity
    present = set(k.family.tolist())
    if 0 in present:
        out = torch.where(f == 0, torch.exp(-0.5 * q), out)
    if 1 in present:
        out = torch.where(f == 1, torch.exp(-0.5 * q ** beta), out)
    if 2 in present:
        out = torch.where(f == 2, 1.0 / (1.0 + q ** beta), out)
    if 3 in present:
        w = k.cutoff[:, None, None]
        sinc = torch.where(r == 0, w ** 2 / (4 * math.pi), w * torch.special.bessel_j1(w * r) / (
            2 * math.pi * r.clamp(min=1e-12)))
        out = torch.where(f == 3, sinc, out)
    half = (k.size // 2)[:, None, None]
    out = out * ((x.abs() <= half) & (y.abs() <= half))
    return (out / out.sum(dim=(1, 2), keepdim=True)).float()


def _one(family: int, size: int, **values: float) -> KernelDraws:
    t = {name: torch.tensor([values.get(name, 1.0)], dtype=torch.float64)
         for name in ("sigma_x", "sigma_y", "theta", "beta", "cutoff")}
    return KernelDraws(torch.tensor([family]), torch.tensor([size]), kind=[FAMILIES[family]], **t)


def _crop(k: torch.Tensor, size: int, full: int = MAX_KERNEL) -> torch.Tensor:
    o = (full - size) // 2
    return k[..., o:o + size, o:o + size]


def gaussian_family_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, kind: str = "gaussian",
                           beta: float = 1.0) -> torch.Tensor:
    """One size x size kernel of :func:`kernels` (kind: gaussian, generalized or plateau)."""
    if kind not in FAMILIES[:3]:
        raise DegradationError(f"unknown kernel kind {kind!r}")
    k = _one(FAMILIES.index(kind), size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)
    return _crop(kernels(k)[0], size)


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """One size x size circular low-pass (2-D sinc) kernel of angular cutoff ``cutoff`` (radians/pixel)."""
    return _crop(kernels(_one(3, size, cutoff=cutoff))[0], size)


def filter_batch(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x`` (B, C, H, W) convolved with its own kernel ``k`` (B, K, K; odd K, each kernel centred
    and zero outside its support), reflect-padded: one grouped convolution for the batch, the kernels cropped to the
    largest support; on large images one per kernel size (measured: 1.4x faster at 256 x 256, no gain at 64)."""
    h, w = x.shape[-2:]
    sizes = _supports(k)
    if h * w >= GROUP_BY_SIZE_PIXELS and len(set(sizes)) > 1:
        out = torch.empty_like(x)
        for size in sorted(set(sizes)):
            idx = torch.tensor([i for i, z in enumerate(sizes) if z == size])
            out[idx] = _filter(x[idx], _crop(k[idx], size, k.shape[-1]))
        return out
    return _filter(x, _crop(k, max(sizes), k.shape[-1]))


GROUP_BY_SIZE_PIXELS = 128 * 128


def _supports(k: torch.Tensor) -> list[int]:
    """The odd side of each kernel's non-zero support (kernels centred in k.shape[-1])."""
    half = k.shape[-1] // 2
    rows = (k.abs().sum(dim=-1) > 0)  # (B, K): rows with any weight
    r = torch.arange(k.shape[-1]) - half
    return [2 * int(r[row].abs().max()) + 1 if bool(row.any()) else 1 for row in rows]


def _filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    pad = weight.shape[-1] // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode).reshape(1, b * c, h + 2 * pad, w + 2 * pad)
    out = F.conv2d(xp, weight.to(x)[:, None].repeat_interleave(c, dim=0), groups=b * c)
    return out.reshape(b, c, h, w)


# ------------------------------------------------------------------------------------------------------------ noise
def noise_fields(x: torch.Tensor, n: NoiseDraws, gens: list[torch.Generator]) -> torch.Tensor:
    """Each sample's noise, from its own generator: Gaussian N(0, (value/255)^2) or Poisson (Poisson(I * 256) / 256
    - I) * value, so Var = value^2 I / 256; a gray sample has one field for all its channels (Poisson: on its BT.601
    luma), a colour sample one per channel."""
    b, c, h, w = x.shape
    out = []
    for i in range(b):
        if n.gaussian[i]:
            field = torch.randn((1 if n.gray[i] else c, h, w), generator=gens[i]) * (float(n.value[i]) / 255.0)
        else:
            img = x[i].detach().clamp(0, 1).cpu().float()
            base = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0) if n.gray[i] else img
            field = (torch.poisson(base * POISSON_LEVELS, generator=gens[i]) / POISSON_LEVELS - base) * float(
                n.value[i])
        out.append(field.expand(c, h, w))
    return torch.stack(out).to(x)


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor,
                   gens: list[torch.Generator]) -> torch.Tensor:
    """``x`` plus Gaussian noise, ``sigma`` per sample on the 0-255 scale (:func:`noise_fields`)."""
    return x + noise_fields(x, NoiseDraws(torch.ones_like(gray, dtype=torch.bool), sigma, gray), gens)


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor,
                  gens: list[torch.Generator]) -> torch.Tensor:
    """``x`` plus Poisson noise, ``scale`` per sample (:func:`noise_fields`)."""
    return x + noise_fields(x, NoiseDraws(torch.zeros_like(gray, dtype=torch.bool), scale, gray), gens)


# ------------------------------------------------------------------------------------------------------------- JPEG
def jpeg(x: torch.Tensor, quality: torch.Tensor | list[int]) -> torch.Tensor:
    """A real JPEG round trip per sample (libjpeg through torchvision.io on CPU; 4:2:0 chroma as Pillow's default),
    at its own quality: the codec's rounding and blocks, not an approximation of them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's codecs point to TorchCodec
        from torchvision.io import decode_jpeg, encode_jpeg

        u8 = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
        out = [decode_jpeg(encode_jpeg(u8[i], quality=int(quality[i]))) for i in range(u8.shape[0])]
    return torch.stack(out).to(x.device, x.dtype) / 255.0


# ------------------------------------------------------------------------------------------------------------- chain
def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def apply(hr: torch.Tensor, s: DegradationSettings, d: Draws, gens: list[torch.Generator]) -> torch.Tensor:
    """HR (B, 3, H, W) in [0, 1] through the second-order chain with the draws ``d``: LR (B, 3, H/scale, W/scale),
    8-bit values. Blur, noise and JPEG per sample; each resize one call for the batch."""
    h, w = hr.shape[-2:]
    lr_hw = (h // s.scale, w // s.scale)
    x = filter_batch(hr, kernels(d.blur1))
    x = _interp(x, (int(h * d.resize1[0]), int(w * d.resize1[0])), d.resize1[1])
    x = jpeg(x + noise_fields(x, d.noise1, gens), d.jpeg1)
    if bool((d.blur2.family != 4).any()):
        x = filter_batch(x, kernels(d.blur2))
    x = _interp(x, (int(lr_hw[0] * d.resize2[0]), int(lr_hw[1] * d.resize2[0])), d.resize2[1])  # relative to LR
    x = x + noise_fields(x, d.noise2, gens)
    sinc = kernels(d.final_sinc) if bool((d.final_sinc.family != 4).any()) else None

    def resize_sinc(y: torch.Tensor) -> torch.Tensor:
        y = _interp(y, lr_hw, d.final_mode)
        return y if sinc is None else filter_batch(y, sinc)

    x = jpeg(resize_sinc(x), d.jpeg2) if d.sinc_first else resize_sinc(jpeg(x, d.jpeg2))
    return (x.clamp(0, 1) * 255.0).round() / 255.0


def degrade_batch(hr: torch.Tensor, s: DegradationSettings, seed: int, iteration: int,
                  samples: list[int] | None = None) -> tuple[torch.Tensor, Draws]:
    """HR (B, 3, H, W) in [0, 1] -> LR (B, 3, H/scale, W/scale) in [0, 1] (8-bit values) and the draws. Sample i's
    degradation depends only on (seed, iteration, samples[i]) and the batch-level draws of (seed, iteration)
    (default samples: 0..B-1; DDP ranks pass their global indices)."""
    samples = list(range(hr.shape[0])) if samples is None else list(samples)
    if len(samples) != hr.shape[0]:
        raise DegradationError(f"{len(samples)} sample indices for a batch of {hr.shape[0]}")
    d, gens = draw(s, seed, iteration, samples)
    return apply(hr, s, d, gens), d


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
