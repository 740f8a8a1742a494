"""``srgan upscale``'s files: reading and writing every format it handles (16-bit PNG through pypng, TIFF tags, the
output format rule), the input limits (decompression bombs), collecting inputs from files and folders, and the batch
driver that writes each result while the next image is computed. The Upscaler itself is
:mod:`srgan_lib.inference.upscaler`.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from srgan_lib.inference.upscaler import DEFAULT_MAX_PIXELS, UpscaleError, Upscaler
from srgan_lib.io.images import IMAGE_EXTENSIONS, ImageReadError, atomic_path, is_image_file, iter_image_files

log = logging.getLogger(__name__)


def png16_info(path: Path) -> tuple[int, int, int] | None:
    """(width, height, channels) of a 16-bit RGB or RGBA PNG (which Pillow would reduce to 8 bits), else None."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    depth, colour = head[24], head[25]
    return (width, height, 3 if colour == 2 else 4) if depth == 16 and colour in (2, 6) else None


def read_png16(path: Path) -> np.ndarray:
    """Decode a 16-bit RGB/RGBA PNG to HxWxC uint16 (pypng; Pillow has no 16-bit colour mode)."""
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except (png.Error, zlib.error, ValueError) as exc:
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from None
    return data.reshape(height, width, info["planes"])


def write_png16(path: Path, image: np.ndarray) -> None:
    """Write HxWx3/4 uint16 as a 16-bit PNG, atomically."""
    import png

    h, w, c = image.shape
    writer = png.Writer(w, h, bitdepth=16, greyscale=False, alpha=c == 4)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer.write(fh, image.reshape(h, w * c))


# TIFF's own structure tags (sizes, sample layout, strips, compression, palette...): Pillow's getexif() of a TIFF
# input returns them with the descriptive tags, and writing them into a new TIFF breaks its encoder
TIFF_STRUCTURE_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 290,
                                 291, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 530, 532})
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP"}
OUTPUT_FORMATS = ("auto", "png", "jpg", "webp", "tiff")


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image over ``max_pixels`` (0: no limit) before it is decoded."""
    if max_pixels and width * height > max_pixels:
        raise UpscaleError(f"'{path}' is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
                           f"{max_pixels / 1e6:.1f} MP (a decompression bomb?); raise --max-pixels if it is genuine")


def open_limited(path: Path, max_pixels: int) -> Image.Image:
    """Open and decode an image, refusing (before decoding) more than ``max_pixels`` pixels (0: no limit)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces Pillow's bomb check
    try:
        img = Image.open(path)
        if max_pixels and img.width * img.height > max_pixels:
            img.close()
            check_pixels(path, img.width, img.height, max_pixels)
        img.load()
        return img
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, zlib.error, EOFError) as exc:
        if isinstance(exc, UpscaleError):
            raise
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def output_format(src: Path, fmt: str, image: Image.Image) -> tuple[str, str]:
    """(extension, Pillow format) for an output: ``auto`` keeps the input's format where it can hold the result;
    float images and several pages only fit in TIFF."""
    ext = src.suffix.lower() if fmt == "auto" else f".{fmt}"
    if ext not in FORMATS:
        ext = ".png"
    if image.mode == "F" or getattr(image, "n_frames", 1) > 1:
        if fmt not in ("auto", "tiff"):
            what = "a float image" if image.mode == "F" else f"{image.n_frames} pages"
            raise UpscaleError(f"'{src}' has {what}, which only TIFF holds: use --format tiff (or auto)")
        return (ext if FORMATS.get(ext) == "TIFF" else ".tif"), "TIFF"
    if FORMATS[ext] in ("JPEG", "BMP") and (image.mode not in ("RGB", "L", "CMYK") or
                                            (image.mode == "CMYK" and FORMATS[ext] == "BMP")):
        ext = ".png"  # JPEG/BMP cannot hold alpha, 16 bits or a palette faithfully
    if FORMATS[ext] == "WEBP" and image.mode not in ("RGB", "RGBA"):
        ext = ".png"
    return ext, FORMATS[ext]


def collect_inputs(inputs: Sequence[str | Path], ignored: dict[str, str] | None = None) -> list[tuple[Path, Path]]:
    """(file, output path relative to the output folder): folders recursively, keeping their sub-folders. Files in
    the folders that are not images go to ``ignored`` (path -> why) so that none disappears unreported; a file named
    on the command line is always attempted (and fails with its reason)."""
    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = list(iter_image_files(item, recursive=True))
            pairs += [(f, f.relative_to(item)) for f in images]
            if ignored is not None:
                kept = set(images)
                for f in sorted(p for p in item.rglob("*") if p.is_file() and p not in kept):
                    ignored[str(f)] = ("hidden file" if f.name.startswith(".") else
                                       f"not a supported image extension ({f.suffix or 'none'}; supported: "
                                       f"{' '.join(sorted(IMAGE_EXTENSIONS))})")
        elif item.is_file() or not item.exists():
            pairs.append((item, Path(item.name)))
    return pairs


@dataclass
class UpscaleSummary:
    """What a batch did: written outputs, skipped (existing) ones, failures and files in the input folders that are
    not images, each with its reason."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    input_pixels: int = 0
    seconds: float = 0.0


def _claim(dest: Path, src: Path, claimed: dict[Path, Path], existing: str, summary: UpscaleSummary) -> bool:
    """Reserve ``dest`` for ``src``: False (and counted as skipped) when it exists and ``existing`` is skip."""
    if dest in claimed:
        raise UpscaleError(f"'{src}' and '{claimed[dest]}' would both be written to '{dest}'")
    claimed[dest] = src
    if dest.exists() and existing != "overwrite":
        if existing == "skip":
            summary.skipped.append(dest)
            return False
        raise UpscaleError(f"'{dest}' exists; use --skip-existing or --overwrite")
    return True


def _output_exif(image: Image.Image, pil_format: str) -> bytes | None:
    """The input's EXIF for the output: without the TIFF structure tags (they describe the input's strips), the
    orientation reset (already applied to the pixels); None where the format carries no EXIF."""
    exif = image.getexif()
    for tag in TIFF_STRUCTURE_TAGS & set(exif):
        del exif[tag]
    if not exif or pil_format not in ("JPEG", "PNG", "WEBP", "TIFF"):
        return None
    exif[0x0112] = 1
    return exif.tobytes()


def _save_options(pages: list[Image.Image], pil_format: str, quality: int, exif: bytes | None) -> dict[str, object]:
    """Pillow's save options for an output: quality, the ICC profile and EXIF kept, every page of a multi-page TIFF."""
    options: dict[str, object] = {}
    if pil_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    if "icc_profile" in pages[0].info and pil_format != "BMP":
        options["icc_profile"] = pages[0].info["icc_profile"]
    if exif:
        options["exif"] = exif
    if len(pages) > 1:
        options.update(save_all=True, append_images=pages[1:])
    return options


def upscale_files(upscaler: Upscaler, inputs: Sequence[str | Path], out_dir: str | Path, *, fmt: str = "auto",
                  quality: int = 95, suffix: str = "", existing: Literal["error", "skip", "overwrite"] = "error",
                  max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None) -> UpscaleSummary:
    """Upscale every input image into ``out_dir``; a bad file is reported and the others are still written.

    Encoding and writing an output (PNG compression of a 16x larger image is slow) runs in a background thread while
    the next image is upscaled; at most one write is pending, so memory holds at most two outputs."""
    summary, start, out_dir = UpscaleSummary(), time.perf_counter(), Path(out_dir)
    pairs = collect_inputs(inputs, summary.ignored)
    claimed: dict[Path, Path] = {}
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="srgan-write")
    pending: tuple[Path, Path, Future[None]] | None = None

    def finish() -> None:  # the previous write: counted as written, or as failed with its reason
        nonlocal pending
        if pending is None:
            return
        src, dest, future = pending
        pending = None
        try:
            future.result()
            summary.written.append(dest)
        except (OSError, ValueError) as exc:
            summary.failed[str(src)] = f"{src}: writing {dest} failed: {exc}"
            log.error("%s", summary.failed[str(src)])

    def save(result: Image.Image, dest: Path, pil_format: str, options: dict[str, object]) -> None:
        with atomic_path(dest) as tmp:
            result.save(tmp, format=pil_format, **options)

    bar = tqdm(pairs, desc="upscale", unit="img", disable=None if progress is None else not progress)
    for src, rel in bar:
        bar.set_postfix_str(src.name, refresh=False)
        try:
            if not src.exists():
                raise ImageReadError(src, "file not found")
            if not is_image_file(src):
                raise ImageReadError(src, f"not a supported image extension ({src.suffix or 'none'})")
            deep = png16_info(src) if src.suffix.lower() == ".png" else None
            if deep is not None:
                check_pixels(src, deep[0], deep[1], max_pixels)
                dest = out_dir / rel.parent / f"{rel.stem}{suffix}.png"  # 16-bit colour: PNG only
                if _claim(dest, src, claimed, existing, summary):
                    finish()  # outputs are listed in input order
                    write_png16(dest, upscaler.upscale_rgb16(read_png16(src)))
                    summary.input_pixels += deep[0] * deep[1]
                    summary.written.append(dest)
                continue
            with open_limited(src, max_pixels) as image:
                ext, pil_format = output_format(src, fmt, image)
                dest = out_dir / rel.parent / f"{rel.stem}{suffix}{ext}"
                if not _claim(dest, src, claimed, existing, summary):
                    continue
                exif_bytes = _output_exif(image, pil_format)  # now: seeking to another page reloads the EXIF
                pages = []
                for page in range(getattr(image, "n_frames", 1)):  # every page of a multi-page TIFF
                    image.seek(page)
                    pages.append(upscaler.upscale(image))
                    summary.input_pixels += image.width * image.height
                result = pages[0]
            options = _save_options(pages, pil_format, quality, exif_bytes)
            finish()
            pending = (src, dest, writer.submit(save, result, dest, pil_format, options))
        except (ImageReadError, UpscaleError, OSError, ValueError) as exc:
            summary.failed[str(src)] = str(exc)
            log.error("%s", exc)
    finish()
    writer.shutdown()
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
