"""The README's before/after picture: a crop of a Set14 image, LR (pixel-replicated) | bicubic | the generator | HR.

    python docs/before_after.py --model models/esrgan.pth --out docs/images/before_after.png

Uses the same ``Upscaler`` as ``srgan upscale``; the LR is the project's MATLAB-bicubic x4 downscale of the HR image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srgan_lib.data.resize import downsample, modcrop, upsample
from srgan_lib.inference.upscaler import Upscaler
from srgan_lib.io.images import read_image, write_png
from srgan_lib.metrics.psnr_ssim import psnr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/esrgan.pth")
    p.add_argument("--image", default="data/benchmarks/Set14/HR/comic.png")
    p.add_argument("--box", type=int, nargs=4, default=(60, 120, 220, 280), metavar=("X0", "Y0", "X1", "Y1"),
                   help="HR crop (multiples of 4)")
    p.add_argument("--out", default="docs/images/before_after.png")
    args = p.parse_args()
    hr = modcrop(read_image(args.image), 4)
    lr = downsample(hr, 4, "matlab")
    up = Upscaler(args.model, device="cpu", tile=0)
    panels = {"LR x4 (nearest)": upsample(lr, 4, "nearest"), "bicubic": upsample(lr, 4, "bicubic"),
              f"{Path(args.model).stem} (srgan upscale)": up.upscale_array(lr), "HR": hr}
    x0, y0, x1, y1 = args.box
    tiles = []
    for label, img in panels.items():
        crop = Image.fromarray(img[y0:y1, x0:x1]).resize(((x1 - x0) * 2, (y1 - y0) * 2), Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (crop.width, crop.height + 22), "white")
        canvas.paste(crop, (0, 22))
        score = "" if label == "HR" else f"  PSNR-Y {psnr(img, hr, space='y', shave=4):.2f} dB"
        ImageDraw.Draw(canvas).text((4, 5), label + score, fill="black")
        tiles.append(np.asarray(canvas))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    write_png(args.out, np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
    print(f"before/after: {args.out}")


if __name__ == "__main__":
    main()
