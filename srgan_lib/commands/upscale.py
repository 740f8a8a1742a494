"""`srgan upscale`: upscale images or folders with a trained generator (tiled, any size)."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError, add_model_source

DESCRIPTION = ("Upscale image files and folders (recursively, keeping sub-folders) with a generator checkpoint (this"
               " project's, BasicSR's or Real-ESRGAN's x4 RRDBNet / SRResNet) or a registered MLflow model "
               "(models:/NAME@ALIAS, models:/NAME/VERSION). Greyscale, 16-bit greyscale, alpha and palette images "
               "keep their mode; EXIF orientation is applied, the ICC profile kept. Tiles stream from CPU memory, so"
               " memory is bounded by the tile size. Exit status 1 when any file failed (the others are still "
               "written).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    add_model_source(p)
    p.add_argument("--tile", type=int, default=None,
                   help="tile size in input pixels (default: per image, the measured side or the whole image "
                   "with the smallest estimated time; the sides are timed once for this network, device, precision, "
                   "backend, threads, pads and torch version - the cache key - and kept in "
                   "$SRGAN_CACHE_DIR/tiles.json, else ~/.cache/srgan/tiles.json; a probe cut short by its time budget "
                   "or disturbed by load is used for that run only, and a cached side whose tiles run 2x slower than "
                   "recorded is measured again; never above a quarter of the free memory; images up to 192 px run "
                   "whole; 0: whole image in one pass)")
    p.add_argument("--retune", action="store_true",
                   help="measure the fastest tile again and rewrite its cache entry (after a hardware or load change)")
    p.add_argument("--tile-pad", type=int, default=None,
                   help="context around each tile, input pixels (default: per tile side, the smallest that keeps the "
                   "tiled output within --tile-db of the whole-image output; measured once per network and weights "
                   "on noise, fp32, and cached beside the tiles)")
    p.add_argument("--backend", choices=("auto", "torch", "openvino"), default="auto",
                   help="where the tiles run: PyTorch, or OpenVINO (pip install 'srgan[openvino]'; on an Intel Xeon "
                   "with AMX, 2 cores, Real-ESRGAN x4plus at 512x512: 2.0-2.4x PyTorch's bf16); auto (default): "
                   "OpenVINO on CPU when installed and when it reproduces PyTorch's fp32 output on this network. "
                   "Either way the bf16 output is checked against fp32 (--guard-db)")
    p.add_argument("--tile-db", type=float, default=None, metavar="DB",
                   help="how close tiles stay to the whole-image output (PSNR, default "
                   "srgan_lib.inference.context.DEFAULT_TILE_DB = 50 dB); ignored with --tile-pad")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto (default): bf16 autocast where the device runs bf16 natively (CUDA with bf16; CPUs "
                   "with AVX512_BF16 or AMX), else fp32; fp32: always exact; fp16 needs CUDA. Autocast output is "
                   "guarded (--guard-db)")
    p.add_argument("--guard-db", type=float, default=None, metavar="DB",
                   help="accuracy guard of bf16/fp16: a 64x64 probe of each image also runs in fp32, and the image "
                   "is redone in fp32 when the two differ by more than this PSNR (default 40 dB, "
                   "srgan_lib.inference.upscaler.DEFAULT_GUARD_DB; 0: no probe). Non-finite tiles are always redone "
                   "in fp32")
    p.add_argument("--alpha", choices=("bicubic", "model"), default="bicubic",
                   help="how an alpha channel is upscaled (default bicubic)")
    p.add_argument("--format", choices=("auto", "png", "jpg", "webp", "tiff"), default="auto",
                   help="output format (auto: the input's, PNG where it cannot hold the result)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--suffix", default="", help="added to output file names, e.g. _x4")
    exist = p.add_mutually_exclusive_group()
    exist.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--max-pixels", type=int, default=200_000_000,
                   help="refuse inputs with more pixels (decompression bombs; default 200e6, 0: no limit)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.inference.context import DEFAULT_TILE_DB
    from srgan_lib.inference.files import upscale_files
    from srgan_lib.inference.upscaler import DEFAULT_GUARD_DB, Upscaler

    if args.tile is not None and args.tile < 0:
        raise CLIError(f"--tile must be >= 0 (0: whole image in one pass), got {args.tile}")
    if args.guard_db is not None and args.guard_db < 0:
        raise CLIError(f"--guard-db must be >= 0 (0: no probe), got {args.guard_db}")
    if args.tile_pad is not None and args.tile_pad < 0:
        raise CLIError(f"--tile-pad must be >= 0, got {args.tile_pad}")
    if args.tile_db is not None and args.tile_db <= 0:
        raise CLIError(f"--tile-db must be > 0, got {args.tile_db}")
    up = Upscaler(args.model, device=args.device, tile=args.tile, tile_pad=args.tile_pad, precision=args.precision,
                  alpha=args.alpha, prefer_ema=not args.no_ema, tracking_uri=args.tracking_uri,
                  guard_db=DEFAULT_GUARD_DB if args.guard_db is None else args.guard_db, retune=args.retune,
                  tile_db=DEFAULT_TILE_DB if args.tile_db is None else args.tile_db, backend=args.backend)
    existing = "skip" if args.skip_existing else "overwrite" if args.overwrite else "error"
    s = upscale_files(up, args.inputs, args.out, fmt=args.format, quality=args.quality, suffix=args.suffix,
                      existing=existing, max_pixels=args.max_pixels)
    rate = s.input_pixels / 1e6 / s.seconds if s.seconds and s.input_pixels else 0.0
    print(f"upscale: x{up.scale} -> {args.out}/  processed {len(s.written)}, skipped {len(s.skipped)}, "
          f"failed {len(s.failed)}, not images {len(s.ignored)}  ({s.seconds:.1f} s, {rate:.3f} input MP/s, "
          f"{up.device} {up.backend}, {up.describe_runs()}, {up.describe_tile()})")
    for src, why in s.failed.items():
        print(f"  failed: {src}: {why}", file=sys.stderr)
    for src, why in s.ignored.items():
        print(f"  not an image, left out: {src}: {why}", file=sys.stderr)
    if up.guard_psnr:
        print(f"  accuracy guard: {up.precision} vs fp32 on the probes {min(up.guard_psnr):.1f} dB at worst "
              f"(bound {up.guard_db:g} dB)")
    if up.fp32_retries:
        print(f"  {up.fp32_retries} tile(s) redone in fp32 (non-finite {up.precision} output)")
    return 1 if s.failed else 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan upscale"))
