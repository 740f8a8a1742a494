"""What a batch's degradation draws, from (seed, iteration, sample) only: one vector of uniforms per sample (its
kernels, noise and JPEG qualities) and one per batch (resize scales and modes, the final order)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from srgan_lib.data.degradations.settings import KERNEL_TYPES, RESIZE_MODES, Blur, DegradationSettings, Noise, Resize


def sample_generator(seed: int, iteration: int | str, sample: int) -> torch.Generator:
    """The random generator of one sample of one iteration: seeded from (seed, iteration, sample) only (sample -1:
    the batch-level draws, which every DDP rank shares)."""
    digest = hashlib.blake2b(f"{seed}/{iteration}/{sample}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


# where each per-sample draw sits in a sample's vector of uniforms (one generator call per sample), in this order
_BLUR_KEYS = ("size", "sinc", "cutoff", "kind", "sigma_x", "sigma_y", "theta", "beta")
_SLOT = {key: i for i, key in enumerate((
    *(f"blur1.{k}" for k in _BLUR_KEYS), *(f"blur2.{k}" for k in _BLUR_KEYS), "blur2.on",
    *(f"{n}.{k}" for n in ("noise1", "noise2") for k in ("gaussian", "value", "gray")),
    "jpeg1", "jpeg2", "final.on", "final.size", "final.cutoff"))}
N_SLOTS = len(_SLOT)
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
    own_lr: torch.Tensor | None = None  # samples that kept their image's own LR (paired data) instead of the chain's

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
                "order": "resize+sinc, jpeg" if self.sinc_first else "jpeg, resize+sinc",
                **({} if self.own_lr is None else {"own_lr": bool(self.own_lr[i])})}

    def caption(self, i: int) -> str:
        """Sample ``i``'s draws (:meth:`describe`) in three short lines (preview pictures)."""
        d = self.describe(i)

        def k(kd: dict[str, Any] | None, none: str) -> str:
            if kd is None:
                return none
            if kd["type"] == "sinc":
                return f"sinc {kd['size']}px cut {kd['cutoff']:.2f}"
            return f"{kd['type']} {kd['size']}px s {kd['sigma'][0]:.1f}/{kd['sigma'][1]:.1f}"

        def n(nd: dict[str, Any]) -> str:
            return f"{'gauss' if nd['noise'] == 'gaussian' else 'poisson'}{' gray' if nd['gray'] else ''} " \
                   f"{nd['value']:.1f}"

        def r(rd: dict[str, Any]) -> str:
            return f"x{rd['scale']:.2f} {rd['mode']}"

        order = "sinc>jpeg" if self.sinc_first else "jpeg>sinc"
        return (f"1: {k(d['blur1'], 'no blur')}, {r(d['resize1'])}, {n(d['noise1'])}, q{d['jpeg1']}\n"
                f"2: {k(d['blur2'], 'no blur')}, {r(d['resize2'])}, {n(d['noise2'])}\n"
                f"   {k(d['final_sinc'], 'no sinc')}, q{d['jpeg2']}, {order}")

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
        if self.own_lr is not None:
            out["own_lr"] = float(self.own_lr.double().mean())
        return out


def _resize_draw(r: Resize, u: torch.Tensor) -> tuple[float, str]:
    """Up / down / keep by the stage's probabilities, a scale in that direction, a mode (3 uniforms)."""
    way = int(_pick(u[0], r.probs))
    scale = float(_span(u[1], 1.0, r.scale[1])) if way == 0 else float(_span(u[1], r.scale[0], 1.0)) if way == 1 \
        else 1.0
    return scale, RESIZE_MODES[int(_pick(u[2], r.mode_probs))]


def draw(s: DegradationSettings, seed: int, iteration: int | str, samples: list[int]
         ) -> tuple[Draws, list[torch.Generator]]:
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
