"""The degradation chain's settings (Real-ESRGAN x4plus's defaults) and their check, which names the setting."""

from __future__ import annotations

from dataclasses import dataclass

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL = 21  # the largest kernel side: every kernel is centred in a MAX_KERNEL square (one grouped conv)


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


def _pair(name: str, values: tuple, what: str) -> None:
    if len(values) != 2:
        raise DegradationError(f"'{name}': {what} [lo, hi], got {list(values)}")


def _range(name: str, lo_hi: tuple[float, float], minimum: float, strict: bool = True) -> None:
    _pair(name, lo_hi, "a range")
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
        _pair(f"{stage}.sizes", b.sizes, "kernel sizes")
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
        _pair(stage, getattr(s, stage), "JPEG qualities")
        lo, hi = getattr(s, stage)
        if not 1 <= lo <= hi <= 100:
            raise DegradationError(f"'{stage}': JPEG qualities 1 <= lo <= hi <= 100, got {[lo, hi]}")
    for name in ("blur2_prob", "final_sinc_prob", "sinc_first_prob"):
        _prob(name, getattr(s, name))
    if s.scale < 1:
        raise DegradationError(f"'scale': an integer >= 1, got {s.scale}")
