"""Production inference: upscale any image of any size with a trained generator, tile by tile.

Tiles are cut from the image held in CPU memory, padded by LR pixels of real context, run on the device, and only
their interior is written back into the output array (CPU), so device memory holds one tile whatever the image size.
A deep network's receptive field is far wider than any practical pad (the 23-block RRDBNet's reaches hundreds of
pixels), so the pad is chosen per tile side from how the network's output actually changes with context
(:func:`srgan_lib.inference.context.measure_context`): the tiled output stays within ``tile_db`` (default 50 dB) of the
whole-image output on noise, the worst content measured; ``tile_pad=N`` fixes it instead.
Precision ``auto`` runs the tiles under bf16 autocast where the device does bf16 natively (CUDA; CPUs with
AVX512_BF16/AMX), else fp32. Autocast output is guarded: a tile whose output is not finite is redone in fp32, and per
image one probe window (:data:`GUARD_PROBE` input pixels, centred) also runs in fp32; when the two disagree by more
than ``guard_db`` (PSNR, default :data:`DEFAULT_GUARD_DB`) the whole image is redone in fp32. An image no larger than
the probe runs in fp32 directly under ``auto`` (the check would cost as much as the fp32 pass).

Modes (see :meth:`Upscaler.upscale`): RGB; greyscale stays greyscale; 16-bit greyscale and 16-bit RGB(A) PNGs stay
16-bit (the latter read and written with pypng, as Pillow has no 16-bit colour mode); alpha is
upscaled separately (bicubic, or by the model) and re-attached; palette images are re-quantised to their own palette;
other modes (CMYK, YCbCr, ...) go through RGB and back. EXIF orientation is applied; the ICC profile is kept.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from tqdm import tqdm

from srgan_lib import UserError
from srgan_lib.hardware import ComputeFormat, resolve_compute_format, resolve_device
from srgan_lib.inference.backends import OpenVINOForward, backend_label, checked_openvino, resolve_backend
from srgan_lib.inference.context import DEFAULT_TILE_DB, ContextProfile, context_profile
from srgan_lib.inference.tiling import (
    SMALL_WHOLE,
    TUNE_SIDES,
    PadRule,
    auto_tile,
    check_tile_speed,
    measure_whole,
    memory_side,
    padded_window,
    record_whole,
    tile_grid,
    tuned_tile,
)
from srgan_lib.models import Generator, as_generator, load_generator, to_unit

log = logging.getLogger(__name__)
AlphaMethod = Literal["bicubic", "model"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
DEFAULT_MAX_PIXELS = 200_000_000  # input pixels; larger images are refused (decompression bombs)
# The bf16/fp16 accuracy guard: a GUARD_PROBE x GUARD_PROBE input window of every image is also run in fp32 and the
# whole of both outputs compared (both precisions see the same window: no context is needed, and none is paid for in
# fp32: x4plus on OpenVINO 0.50 s per image against 1.18 s with 16 pixels around it, the same 64x64 compared); below
# DEFAULT_GUARD_DB (PSNR of the autocast output against fp32's, on [0, 1]; 40 dB is an RMS error of 2.6 grey levels in
# 8 bits) the image is redone in fp32. The 23-block RRDBNet in bf16 on Set14 baboon: 46.5 dB.
GUARD_PROBE = 64
DEFAULT_GUARD_DB = 40.0


class UpscaleError(UserError, ValueError):
    """An image cannot be upscaled (too large, unsupported); the message names it and what to do."""


class Upscaler:
    """A generator ready to upscale images: ``Upscaler("models/esrgan.pth").upscale(pil_image)``.

    ``model`` is a :class:`srgan_lib.models.Generator` (what ``load_generator`` returns), a registered generator
    module, a checkpoint path, or an MLflow registry URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``);
    ``value_range`` overrides its output range (and is needed for a module that is not a registered generator).
    The tile rule (the same for ``srgan upscale`` and this API): ``tile=N`` wins (``0``: whole images); else, per
    image, the measured side (or the whole image) with the smallest estimated time on this machine (measured once,
    cached: :func:`srgan_lib.inference.tiling.tuned_tile`; ``retune`` measures again), never above the memory bound;
    ``autotune=False`` keeps the memory rule alone (:func:`srgan_lib.inference.tiling.auto_tile`: what the evaluation
    uses, so that its numbers never depend on a timing). The pad: ``tile_pad=N``, else each side's own, the smallest
    that keeps the tiles within ``tile_db`` of the whole-image output (measured once per network and weights).
    ``guard_db`` is the autocast accuracy guard's bound (module docstring; 0 turns the probe off). :attr:`runs`
    counts the images by the precision they actually ran in (``bf16``, ``fp32``, ``fp32 (guard)``: redone after the
    probe failed, ``fp32 (small)``).
    """

    def __init__(self, model: Generator | nn.Module | str | Path, *, device: str | torch.device = "auto",
                 tile: int | None = None, tile_pad: int | None = None, precision: Precision = "auto",
                 alpha: AlphaMethod = "bicubic", prefer_ema: bool = True, tracking_uri: str | None = None,
                 value_range: tuple[float, float] | None = None, channels_last: bool = True,
                 guard_db: float = DEFAULT_GUARD_DB, autotune: bool = True, retune: bool = False,
                 tile_db: float = DEFAULT_TILE_DB, backend: str = "auto") -> None:
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)  # BackendError (a UserError) when it cannot run here
        self._openvino: OpenVINOForward | None = None
        self._backend_asked = backend
        if isinstance(model, (str, Path)):
            from srgan_lib.registry.resolve import resolve_model_path

            model = load_generator(resolve_model_path(str(model), tracking_uri), prefer_ema=prefer_ema)
        self.generator = as_generator(model, value_range)
        self.value_range: tuple[float, float] = self.generator.value_range
        self.scale: int = self.generator.scale
        if tile is not None and tile < 0:
            raise UpscaleError(f"tile must be >= 0 (0: whole image), got {tile}")
        if tile_pad is not None and tile_pad < 0:
            raise UpscaleError(f"tile_pad must be >= 0 (or None: measured), got {tile_pad}")
        if tile_db <= 0:
            raise UpscaleError(f"tile_db must be > 0 (PSNR of the tiled against the whole-image output), got {tile_db}")
        self.tile, self.tile_pad, self.tile_db, self.alpha = tile, tile_pad, tile_db, alpha
        self._context: ContextProfile | None = None
        self.plans: Counter[str] = Counter()  # images by the tile and pad they ran with, for the summary
        self.autotune, self._tuned = autotune and tile is None, None
        self._dropped = ""  # the reason of a tuned choice the in-use check dropped (the summary still names it)
        self.retune, self.tile_notes = retune, []  # what the in-use check found (stale entries), for the summary
        if self.device.type != "cuda" and precision == "fp16":
            raise UpscaleError(f"precision fp16 needs CUDA; on {self.device} use fp32 or bf16")
        if precision == "auto":
            self.compute = resolve_compute_format(self.device, "auto", channels_last)
        else:  # asked for explicitly: honoured (bf16 on a CPU without native bf16 is slow, not wrong)
            self.compute = ComputeFormat(precision, channels_last and self.device.type in ("cpu", "cuda"))
        self.precision = self.compute.precision
        if guard_db < 0:
            raise UpscaleError(f"guard_db must be >= 0 (0: no accuracy probe), got {guard_db}")
        self.guard_db, self.auto = guard_db, precision == "auto"
        # the memory format of the weights: a module shared with a training loop is already in the format it trains
        # in, and then it is left alone
        self.model = self.generator.module.eval().to(self.device, memory_format=self.compute.memory_format)
        self.fp32_retries = 0  # tiles redone in fp32 because the autocast output was not finite
        self.runs: Counter[str] = Counter()  # images by the precision they ran in
        self.guard_psnr: list[float] = []  # the probe's autocast-vs-fp32 PSNR of each probed image (inf: identical)

    def describe_runs(self) -> str:
        """What ran, for summary lines: e.g. ``bf16 x 12, fp32 (guard) x 1`` (the precision asked when nothing ran)."""
        return ", ".join(f"{k} x {n}" for k, n in sorted(self.runs.items())) or self.precision

    # ------------------------------------------------------------------------------------------------------- arrays

    @torch.no_grad()
    def _run(self, x: torch.Tensor, autocast: bool) -> torch.Tensor:
        """The network's raw output (float32, the generator's value range) on the backend, in the reduced precision
        (``autocast``) or in fp32."""
        dtype = self.compute.amp_dtype if autocast else None
        if self.backend == "openvino" and self._openvino_ready():
            assert self._openvino is not None
            return self._openvino(x, self.precision if dtype is not None else "fp32")
        if dtype is None:
            return self.model(x).float()
        with torch.autocast(self.device.type, dtype=dtype):
            return self.model(x).float()

    def _openvino_ready(self) -> bool:
        """Convert and check the network for OpenVINO once (:func:`checked_openvino`): one that does not run there
        faithfully falls back to PyTorch under ``backend="auto"`` and is an error when OpenVINO was asked for."""
        if self._openvino is None and self.backend == "openvino":
            self._openvino = checked_openvino(self.generator, self.model, self._backend_asked)
            self.backend = "openvino" if self._openvino is not None else "torch"
        return self.backend == "openvino"

    @torch.no_grad()
    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """PyTorch's fp32 output in [0, 1], whatever the backend: what the accuracy guard and the context probe
        compare with."""
        return to_unit(self.model(x).float(), self.value_range).clamp_(0, 1)

    def _forward(self, x: torch.Tensor, autocast: bool = True) -> torch.Tensor:
        y = self._run(x, autocast)
        if autocast and self.compute.amp_dtype is not None and not torch.isfinite(y).all():
            self.fp32_retries += 1
            y = self._run(x, autocast=False)
        return to_unit(y, self.value_range).clamp_(0, 1)

    def _patch(self, image: np.ndarray, peak: float, y0: int, y1: int, x0: int, x1: int, side: int, pad: int
               ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """The input tile ``[y0:y1, x0:x1]`` (of a grid of ``side``) in its window with at least ``pad`` pixels of
        context (:func:`srgan_lib.inference.tiling.padded_window`), on the device, in [0, 1]; and the tile's place
        in the output of that window."""
        h, w, _ = image.shape
        s = self.scale
        (py0, py1), (px0, px1) = padded_window(y0, y1, h, side, pad), padded_window(x0, x1, w, side, pad)
        patch = torch.from_numpy(np.array(image[py0:py1, px0:px1], copy=True)).permute(2, 0, 1)[None]
        patch = patch.to(self.device, non_blocking=True).float().div_(peak)
        inner = ((y0 - py0) * s, (y1 - py0) * s, (x0 - px0) * s, (x1 - px0) * s)
        return patch.contiguous(memory_format=self.compute.memory_format), inner

    def context(self) -> ContextProfile:
        """How this network's tiles depend on their context (measured once per network and weights, cached)."""
        if self._context is None:
            self._context = context_profile(self.generator, self.device, self.compute.memory_format,
                                            self._reference)
        return self._context

    def pad_for(self, tile: int) -> int:
        """The context a tile of this side carries: ``tile_pad`` when given, else the smallest pad that keeps it
        within ``tile_db`` of the whole-image output (0 for whole images)."""
        if self.tile_pad is not None:
            return self.tile_pad
        if tile <= 0:
            return 0
        return self.context().pad_for(tile, self.tile_db, warn=True)

    def pad_rule(self) -> PadRule:
        """The pads the tuner times the sides with: ``tile_pad``, or each side's own."""
        return self.tile_pad if self.tile_pad is not None else {s: self.pad_for(s) for s in TUNE_SIDES}

    def describe_tile(self) -> str:
        """Which tiles ran and why, for summary lines: ``tile 192 pad 16`` (asked), ``tuned 192 (ran tile 192 pad 20
        x 3, whole x 1)`` (the cache), ``tuned this run only: probe stopped at 1 side (its time budget)``, ``whole
        images``, ``tile from memory``."""
        notes = "".join(f"; {n}" for n in self.tile_notes)
        ran = ", ".join(f"{k} x {n}" for k, n in sorted(self.plans.items()))
        if self.tile is not None:
            head = f"tile {self.tile}" if self.tile else "whole images"
        elif self._tuned is None:
            head = self._dropped or (f"whole images (none larger than {SMALL_WHOLE} pixels: no tiles to tune)"
                                     if self.autotune else "tile from memory")
        else:
            head = self._tuned.reason
        return head + (f" (ran {ran})" if ran and (self.tile is None or self.tile) else "") + notes

    def plan(self, height: int, width: int) -> tuple[int, int]:
        """``(tile, pad)`` for an image: ``tile`` when given, else the tuned choice (:meth:`TunedTile.choose`: the
        measured side or the whole image with the smallest estimated time), else the memory rule; an image within
        one tile runs whole."""
        if self.tile is not None:
            tile = self.tile
        elif not self.autotune:
            tile = auto_tile(self.generator, self.device, height, width, self.tile_pad or 0)
        else:
            whole_fits = auto_tile(self.generator, self.device, height, width, 0) == 0
            if self._tuned is None:
                if max(height, width) <= SMALL_WHOLE and whole_fits:
                    return 0, 0  # tiles cannot pay on an image this small: nothing to tune (or to wait for)
                self._openvino_ready()  # the backend the probe times is the one that runs
                self._tuned = tuned_tile(self.generator, self.device, self.precision, self.compute.memory_format,
                                         self.pad_rule(), self._forward, retune=self.retune,
                                         backend=backend_label(self.backend))
                self.retune = False
            rule = self._tuned.pad
            widest = rule if isinstance(rule, int) else max(rule.values(), default=0)
            bound = max(height, width) if whole_fits else memory_side(self.generator, self.device, widest)
            if self._tuned.close_call(height, width, bound):  # whole or tiles: one forward at this size decides
                rate = measure_whole(self._forward, self.device, self.compute.memory_format, height, width)
                self._tuned = record_whole(self._tuned, height, width, rate)
            tile = self._tuned.choose(height, width, bound)
        if tile >= max(height, width):
            tile = 0
        return tile, self.pad_for(tile)

    def tile_for(self, height: int, width: int) -> int:
        return self.plan(height, width)[0]  # the tile side :meth:`plan` chooses for an image (0: whole)

    def _precision_for(self, image: np.ndarray, peak: float) -> str:
        """How this image runs: the autocast precision when its probe agrees with fp32 within ``guard_db``, else
        ``fp32 (guard)``; ``fp32 (small)`` for an image no larger than the probe under precision ``auto``."""
        if self.compute.amp_dtype is None:
            return "fp32"
        if self.guard_db == 0:
            return self.precision
        h, w, _ = image.shape
        if self.auto and h <= GUARD_PROBE and w <= GUARD_PROBE:
            return "fp32 (small)"
        cy, cx = max(0, (h - GUARD_PROBE) // 2), max(0, (w - GUARD_PROBE) // 2)
        patch, (a, b, c, d) = self._patch(image, peak, cy, min(cy + GUARD_PROBE, h), cx, min(cx + GUARD_PROBE, w),
                                          GUARD_PROBE, 0)
        low = to_unit(self._run(patch, autocast=True), self.value_range).clamp_(0, 1)[..., a:b, c:d]
        # fp32 on the backend: OpenVINO's f32 was checked against PyTorch when the network was converted, and runs
        # the probe 1.4x faster than PyTorch's fp32 (the 23-block RRDBNet: ~0.4 s of every image's cost on 2 cores)
        ref = self._forward(patch, autocast=False)[..., a:b, c:d]
        mse = float((low - ref).square().mean())
        db = -math.inf if not math.isfinite(mse) else 10 * math.log10(1 / mse) if mse > 0 else math.inf  # NaN: fails
        self.guard_psnr.append(db)
        if db >= self.guard_db:
            return self.precision
        log.warning("%s output %.1f dB from fp32 on the probe (bound %.1f dB): this image runs in fp32",
                    self.precision, db, self.guard_db)
        return "fp32 (guard)"

    def upscale_array(self, image: np.ndarray, *, progress: bool | None = None) -> np.ndarray:
        """HxWx3 uint8 / uint16 / float32 (in [0, 1]) -> (sH)x(sW)x3 of the same dtype, tile by tile."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise UpscaleError(f"expected an HxWx3 array, got shape {image.shape}")
        if image.dtype == np.uint8:
            peak = 255.0
        elif image.dtype == np.uint16:
            peak = 65535.0
        elif image.dtype == np.float32:
            peak = 1.0
        else:
            raise UpscaleError(f"unsupported array dtype {image.dtype} (uint8, uint16 or float32)")
        h, w, _ = image.shape
        s, (tile, pad) = self.scale, self.plan(h, w)
        self.plans[f"tile {tile} pad {pad}" if tile else "whole"] += 1
        ran = self._precision_for(image, peak)
        self.runs[ran] += 1
        autocast = not ran.startswith("fp32")
        out = np.empty((h * s, w * s, 3), dtype=image.dtype)
        tiles = list(tile_grid(h, w, tile))
        bar = tqdm(tiles, desc="tiles", unit="tile", leave=False, disable=(len(tiles) < 2) if progress is None
                   else not progress)
        # the in-use check of a cached side, in the precision it was measured in (not an fp32 fallback)
        check = self._tuned if ran == self.precision and self._tuned is not None and tile in self._tuned.per_side \
            else None
        timed: list[float] = []  # seconds per input pixel of interior full tiles after the first (a warm-up)
        full = (tile + 2 * pad) ** 2
        for y0, y1, x0, x1 in bar:
            patch, (a, b, c, d) = self._patch(image, peak, y0, y1, x0, x1, tile, pad)
            start = time.perf_counter()
            y = self._forward(patch, autocast)
            if check is not None and patch.shape[-2] * patch.shape[-1] == full:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                timed.append((time.perf_counter() - start) / tile**2)
                if len(timed) == 3:  # the first is a warm-up; the faster of the next two counts
                    if not check_tile_speed(check, tile, min(timed[1:])):
                        self.tile_notes.append(f"the cached tile {tile} ran slow: measured again for the next image")
                        self._dropped, self._tuned = self._tuned.reason if self._tuned else "", None
                    check = None
            y = y[0, :, a:b, c:d].permute(1, 2, 0)
            if peak != 1.0:
                y = y.mul_(peak).round_()
            out[y0 * s:y1 * s, x0 * s:x1 * s] = y.cpu().numpy().astype(image.dtype, copy=False)
        bar.close()
        return out

    def upscale_rgb16(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 or HxWx4 uint16 (a 16-bit RGB/RGBA PNG) -> upscaled uint16, alpha handled like 8-bit alpha."""
        up = self.upscale_array(np.ascontiguousarray(image[..., :3]))
        if image.shape[2] == 3:
            return up
        return np.concatenate([up, self.upscale_alpha(image[..., 3])[..., None]], axis=2)

    def upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        """An HxW uint8 or uint16 alpha channel, upscaled apart from the colours: Pillow's bicubic (in float, then
        rounded and clipped) or, with ``alpha="model"``, the generator on the channel repeated three times."""
        if self.alpha == "model":
            up = self.upscale_array(np.repeat(alpha[..., None], 3, axis=2)).astype(np.float32)
            return np.rint(up.mean(axis=2)).astype(alpha.dtype)
        peak = np.iinfo(alpha.dtype).max
        size = (alpha.shape[1] * self.scale, alpha.shape[0] * self.scale)
        up = np.asarray(Image.fromarray(alpha.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC))
        return np.clip(np.rint(up), 0, peak).astype(alpha.dtype)

    # ------------------------------------------------------------------------------------------------------- images

    def _rgb(self, rgb: Image.Image) -> Image.Image:
        return Image.fromarray(self.upscale_array(np.asarray(rgb.convert("RGB"))))

    def upscale(self, image: Image.Image) -> Image.Image:
        """Upscale a PIL image, keeping its mode, ICC profile and (applied) EXIF orientation."""
        icc = image.info.get("icc_profile")
        image = ImageOps.exif_transpose(image) or image
        mode = image.mode
        if mode == "RGB":
            out = self._rgb(image)
        elif mode in ("L", "1"):
            out = self._rgb(image.convert("L")).convert("L")
            out = out.convert("1", dither=Image.Dither.NONE) if mode == "1" else out
        elif mode in ("I;16", "I;16L", "I;16B", "I"):
            grey = np.asarray(image, dtype=np.int64 if mode == "I" else np.uint16)
            if grey.min() < 0 or grey.max() > 65535:
                raise UpscaleError(f"32-bit integer image with values outside 0..65535 ({grey.min()}..{grey.max()}): "
                                   "scale it to 16 bits (0..65535) or to a 0..1 float image first")
            up = self.upscale_array(np.repeat(grey.astype(np.uint16)[..., None], 3, axis=2))
            # luma of the three (near-equal) channels, as PIL's RGB -> L does, kept in 16 bits
            luma = (up[..., 0] * 299 + up[..., 1].astype(np.uint32) * 587 + up[..., 2].astype(np.uint32) * 114 + 500)
            out = Image.fromarray((luma // 1000).astype(np.uint16))
            out = out if mode != "I" else out.convert("I")
        elif mode == "F":  # 32-bit float grey, values in [0, 1]: upscaled in float, written as float (TIFF)
            grey = np.asarray(image, dtype=np.float32)
            if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
                raise UpscaleError(f"float image with values outside 0..1 ({np.nanmin(grey):g}..{np.nanmax(grey):g}) "
                                   "or not finite: scale it to 0..1 first")
            up = self.upscale_array(np.repeat(grey[..., None], 3, axis=2))
            out = Image.fromarray((up @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32), mode="F")
        elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA") if mode != "LA" else image
            colour, alpha = (rgba.convert("RGB"), rgba.getchannel("A"))
            up = self._rgb(colour)
            out = up.convert("L") if mode == "LA" else up
            out.putalpha(Image.fromarray(self.upscale_alpha(np.asarray(alpha))))
            if mode in ("P", "PA"):
                out = out.convert("RGBA")
        elif mode == "P":
            up = self._rgb(image.convert("RGB"))
            out = up.quantize(palette=image, dither=Image.Dither.NONE)
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            out = self._rgb(image.convert("RGB")).convert(mode)
        else:
            raise UpscaleError(f"unsupported image mode {mode!r}; convert it to RGB first")
        if icc:
            out.info["icc_profile"] = icc
        return out


# ------------------------------------------------------------------------------------------------------------ files
