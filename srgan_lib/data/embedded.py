"""The embedded default training set: RGB photographs bundled inside scikit-image, written out as PNG.

Only images shipped in the scikit-image wheel itself are used (no ``pooch`` download), so the default pipeline runs
with no network. They are small (0.1-2 MP) but real photographs: enough to exercise every stage end to end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from srgan_lib.io.images import write_png

log = logging.getLogger(__name__)


def _skimage_loader(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[index] if index is not None else img

    return load


# Explicit registry: output name -> loader of an RGB uint8 photograph bundled with scikit-image.
EMBEDDED_IMAGES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage_loader("astronaut"),
    "chelsea": _skimage_loader("chelsea"),
    "coffee": _skimage_loader("coffee"),
    "hubble_deep_field": _skimage_loader("hubble_deep_field"),
    "immunohistochemistry": _skimage_loader("immunohistochemistry"),
    "motorcycle_left": _skimage_loader("stereo_motorcycle", 0),
    "motorcycle_right": _skimage_loader("stereo_motorcycle", 1),
    "retina": _skimage_loader("retina"),
    "rocket": _skimage_loader("rocket"),
}


def write_embedded(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Write the named embedded photographs (all by default) to ``out_dir/NAME.png``; return the paths."""
    names = names or list(EMBEDDED_IMAGES)
    unknown = sorted(set(names) - set(EMBEDDED_IMAGES))
    if unknown:
        raise ValueError(
            f"unknown embedded image(s) {', '.join(unknown)}; available: {', '.join(sorted(EMBEDDED_IMAGES))}"
        )
    out = Path(out_dir)
    paths = []
    for name in names:
        img = EMBEDDED_IMAGES[name]()
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise RuntimeError(f"scikit-image's '{name}' is not an RGB uint8 photograph ({img.dtype}, {img.shape})")
        paths.append(write_png(out / f"{name}.png", img))
        log.debug("wrote %s (%dx%d)", paths[-1], img.shape[1], img.shape[0])
    return paths
