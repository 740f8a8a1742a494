"""Published x4 results the project reproduces or compares against (PSNR dB / SSIM, Y channel, shave 4), keyed by
the name of the method that reproduces them (``bicubic``, ``srresnet``, ``srgan``, ``rrdbnet``)."""

from __future__ import annotations

from typing import TypedDict


class Reference(TypedDict):
    """One published row: per-set (psnr_y, ssim_y) and where it comes from."""

    label: str
    source: str
    sets: dict[str, tuple[float, float]]


PAPER_ROWS: dict[str, Reference] = {
    "bicubic": {
        "label": "Bicubic (paper)",
        "source": "ESRGAN paper, supplementary Table 2",
        "sets": {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027)},
    },
    "srresnet": {
        "label": "SRResNet (paper)",
        "source": "SRGAN paper (Ledig et al. 2017), Table 2",
        "sets": {"Set5": (32.05, 0.9019), "Set14": (28.49, 0.8184)},
    },
    "srgan": {
        "label": "SRGAN (paper)",
        "source": "SRGAN paper (Ledig et al. 2017), Table 2",
        "sets": {"Set5": (29.40, 0.8472), "Set14": (26.02, 0.7397)},
    },
    "rrdbnet": {  # keyed by the method name the project evaluates under
        "label": "RRDB (paper)",
        "source": "ESRGAN repository README (PSNR-oriented RRDB, DF2K)",
        "sets": {"Set5": (32.73, 0.9011), "Set14": (28.99, 0.7917)},
    },
}

# How the papers name the methods the project reproduces, in the papers' order (tables and figures list them so);
# any other method (a recipe of your own) is shown under its own name, after them.
PAPER_NAMES: dict[str, str] = {"nearest": "Nearest", "bicubic": "Bicubic", "srresnet": "SRResNet", "srgan": "SRGAN",
                               "rrdbnet": "RRDB", "esrgan": "ESRGAN", "realesrnet": "Real-ESRNet",
                               "realesrgan": "Real-ESRGAN"}

# Tolerances within which the project's bicubic baseline must reproduce the paper row (foundation issue).
BICUBIC_TOLERANCE: dict[str, tuple[float, float]] = {"Set5": (0.05, 0.002), "Set14": (0.15, 0.004)}


def display_name(method: str) -> str:
    """A method's name in tables and figures: the papers' name where there is one, 'Interp. α=...' for the sweep."""
    if method.startswith("interp_"):
        return f"Interp. α={method.removeprefix('interp_')}"
    return PAPER_NAMES.get(method, method)
