"""Reading any image a user may have into RGB uint8, and writing files atomically.

Policy (documented in docs/evaluation.md, "Conventions"):
- EXIF orientation is applied, so pixels are what a viewer shows.
- Greyscale (``1``, ``L``, ``I``, ``I;16``, ``F``) is replicated to three channels; 16-bit and 32-bit values are
  scaled to 8 bits by their nominal range (65535 -> 255), never clipped.
- Alpha (``RGBA``, ``LA``, ``PA``, palette with transparency) is composited over a background colour (white by default,
  what a viewer shows) or, with ``alpha="drop"``, discarded; ``alpha="error"`` refuses such images.
- CMYK, YCbCr, LAB and other modes go through Pillow's conversion to RGB.
- A file that cannot be decoded, or is truncated, raises :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps

from srgan_lib import UserError

AlphaPolicy = Literal["composite", "drop", "error"]
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".tga"}
)

# Truncated files must fail loudly; Pillow's default already does, but other libraries flip this global.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(UserError, OSError):
    """An image file could not be read; the message names the file and what to do."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot read image '{self.path}': {reason}. Check that the file is a complete, supported image "
            "(PNG, JPEG, BMP, TIFF, WebP); re-export it or remove it from the folder."
        )


def is_image_file(path: Path) -> bool:
    """True for a regular file whose extension is a supported image format (hidden files excluded)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def iter_image_files(folder: str | os.PathLike[str], recursive: bool = True) -> Iterator[Path]:
    """Image files under ``folder`` in a deterministic (sorted POSIX path) order."""
    root = Path(folder)
    pattern = "**/*" if recursive else "*"
    yield from sorted((p for p in root.glob(pattern) if is_image_file(p)), key=lambda p: p.as_posix())


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float greyscale image to 8 bits by its nominal range (never clip)."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        top = 1.0 if np.nanmax(arr) <= 1.0 else 255.0
    else:  # I;16* and Pillow's mode I, which is how 16-bit greyscale PNGs open
        top = 65535.0 if np.max(arr) <= 65535 else float(2**32 - 1)
    scaled = np.nan_to_num(arr) * (255.0 / top)
    return Image.fromarray(np.floor(scaled + 0.5).clip(0, 255).astype(np.uint8), mode="L")


def _composite(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    rgba = img.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def to_rgb(
    img: Image.Image,
    *,
    alpha: AlphaPolicy = "composite",
    background: tuple[int, int, int] = (255, 255, 255),
    source: str = "<image>",
) -> Image.Image:
    """Convert a decoded Pillow image of any mode to RGB following the module's policy."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        img = _to_8bit_grey(img)
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        if alpha == "error":
            raise ImageReadError(source, f"image has an alpha channel (mode {mode}) and the alpha policy is 'error'")
        if alpha == "composite":
            return _composite(img, background)
        return img.convert("RGB")
    return img if mode == "RGB" else img.convert("RGB")


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image with Pillow, turning every decoder failure into :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
        return img
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(path, f"image is too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, zlib.error, EOFError) as exc:
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from None


def read_image(
    path: str | os.PathLike[str],
    *,
    alpha: AlphaPolicy = "composite",
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Read an image file into an RGB uint8 array of shape (H, W, 3)."""
    img = to_rgb(open_image(path), alpha=alpha, background=background, source=str(path))
    return np.asarray(img, dtype=np.uint8).copy()


_UMASK = os.umask(0)
os.umask(_UMASK)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks: checksums of downloads and content fingerprints."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``, else removed.

    A killed process therefore never leaves a truncated file under the final name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a finished file gets the usual permissions
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: str | os.PathLike[str], img: np.ndarray | Image.Image, *, compress_level: int = 6) -> Path:
    """Write a uint8 array (HxW or HxWx3/4) or Pillow image as PNG, atomically."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.ascontiguousarray(img))
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG", compress_level=compress_level)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
