"""Data-path throughput: training crops from the prepared store against decoding the source PNG per sample.

Per worker process (this process, one thread), for HR 96 (SRGAN) and HR 128 (ESRGAN) crops it times
- **store**: ``PairedPatches.batch`` on the memory-mapped store (aligned LR/HR crop + flips/rot90 on uint8), and
- **decode**: the naive path of the PyTorch tutorial: decode the 2K HR PNG, crop, flip, bicubic-downsample the crop,
and prints samples (HR/LR pairs) per second for both and the ratio. By default the source images are DIV2K-sized
(2040 x 1356) PNGs made from scikit-image's photographs (upscaled, with sensor-like noise so they compress like
photographs); ``--images DIR`` uses real ones (for example DIV2K_train_HR). ESRGAN at the H100 FLOP floor consumes
about 4,300 HR 128x128 patches per second (the design floors): the table shows how many worker processes each path
needs for that.

    python benchmarks/data.py --json benchmarks/results/data-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srgan_lib.data.degrade import degrade, sources_from_list
from srgan_lib.data.embedded import write_embedded
from srgan_lib.data.lists import build_lists
from srgan_lib.data.store import TrainingStore, build_store, open_training_store
from srgan_lib.io.images import read_image
from srgan_lib.training.data import PairedPatches, augment

FLOOR_PATCHES_PER_S = 4300  # ESRGAN at the H100 FLOP floor, HR 128 (the design floors)
DIV2K_SIZE = (2040, 1356)


def synthesize(out: Path, n: int) -> Path:
    """``n`` DIV2K-sized PNGs from the embedded photographs (bicubic upscale + noise, so they do not compress
    unrealistically well)."""
    raw = out / "small"
    write_embedded(raw)
    hr = out / "hr"
    hr.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, src in enumerate(sorted(raw.glob("*.png"))[:n]):
        big = np.asarray(Image.open(src).convert("RGB").resize(DIV2K_SIZE, Image.Resampling.BICUBIC), np.float32)
        big = np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(big).save(hr / f"{i:04d}.png")
    return hr


def prepare(images: Path, work: Path) -> tuple[Path, Path]:
    """Lists, MATLAB-bicubic LR and the store for the images (the pipeline's own stages)."""
    build_lists([images], {}, work / "lists", min_size=128, test_min_size=16)
    lst = work / "lists" / "train.json"
    degrade(sources_from_list(lst), work / "lr", scale=4)
    build_store(lst, work / "lr", work / "store", scale=4, progress=False)
    return lst, work / "lr"


def rate(fn, samples_per_call: int, seconds: float) -> float:
    """Samples per second of ``fn`` over at least ``seconds`` (after one untimed call)."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n == 0:
        fn()
        n += samples_per_call
    return n / elapsed


def naive_sample(paths: list[Path], hr_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's way: decode the HR PNG, random crop, random flips/transposition, bicubic-downsample the crop."""
    hr = read_image(paths[rng.integers(len(paths))])
    y, x = rng.integers(hr.shape[0] - hr_size + 1), rng.integers(hr.shape[1] - hr_size + 1)
    crop = augment(hr[y:y + hr_size, x:x + hr_size], rng.random(3) < 0.5)
    lr = Image.fromarray(np.ascontiguousarray(crop)).resize((hr_size // 4, hr_size // 4), Image.Resampling.BICUBIC)
    return np.asarray(lr), crop


def measure(store: TrainingStore, paths: list[Path], size: int, batch: int, seconds: float) -> dict[str, float]:
    """Both paths for one HR crop size."""
    patches = PairedPatches(store, hr_size=size, augment=True, seed=0)
    counter = iter(range(1, 10**9))
    store_rate = rate(lambda: patches.batch(next(counter), batch), batch, seconds)
    rng = np.random.default_rng(0)
    decode_rate = rate(lambda: naive_sample(paths, size, rng), 1, seconds)
    return {"store_samples_per_s": store_rate, "decode_samples_per_s": decode_rate, "ratio": store_rate / decode_rate,
            "store_workers_for_h100_floor": FLOOR_PATCHES_PER_S / store_rate,
            "decode_workers_for_h100_floor": FLOOR_PATCHES_PER_S / decode_rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="folder of HR training images (default: synthesized 2K PNGs)")
    p.add_argument("--n-images", type=int, default=8, help="synthesized images (default 8)")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128], help="HR crop sides (default 96 128)")
    p.add_argument("--batch", type=int, default=16, help="crops per store call (default 16, the papers' batch)")
    p.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="srgan-data-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        images = args.images or synthesize(work, args.n_images)
        lst, lr_dir = prepare(images, work)
        store = open_training_store(work / "store", lst, lr_dir, 4)
        paths = [Path(e["hr_path"]) for e in store.images]
        shape = store.images[0]["hr_shape"]
        print(f"{len(store)} source images ({shape[1]}x{shape[0]} first), store built in "
              f"{time.perf_counter() - t0:.0f} s incl. LR generation; one process, one thread")
        results = {str(size): measure(store, paths, size, args.batch, args.seconds) for size in args.sizes}
    print(f"\n{'HR crop':>8} {'store samples/s':>16} {'decode samples/s':>17} {'ratio':>8} "
          f"{'workers for 4300/s (store | decode)':>37}")
    for size, r in results.items():
        print(f"{size + 'x' + size:>8} {r['store_samples_per_s']:16.0f} {r['decode_samples_per_s']:17.1f} "
              f"{r['ratio']:7.0f}x {r['store_workers_for_h100_floor']:17.2f} | "
              f"{r['decode_workers_for_h100_floor']:.0f}")
    print("\nratio = store / decode per sample (higher is better); per worker process")
    if args.json:
        meta = {"device": f"cpu ({platform.processor() or platform.machine()}), one process, one thread",
                "python": platform.python_version(), "images": str(args.images or f"{args.n_images} synthesized "
                                                                  f"{DIV2K_SIZE[0]}x{DIV2K_SIZE[1]} PNGs"),
                "command": "python benchmarks/data.py " + " ".join(sys.argv[1:])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
