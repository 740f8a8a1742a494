"""`srgan data preview`: N training crops beside the LR the real-world degradation makes of them, with the draws."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from srgan_lib.commands import _entry

DESCRIPTION = ("Write a picture of N training crops beside the LR that params.yaml's `degradation` chain makes of "
               "them, each captioned with its draws (kernel, resize, noise, JPEG qualities, final order), exactly as "
               "training draws them at --iteration (seed train.seed); the draws go to a JSON file beside it, and "
               "both to MLflow (params.yaml tracking.uri or $MLFLOW_TRACKING_URI; 'none': off). Crops come from the "
               "training store (`dvc repro store`), or from any folder of photographs with --images.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    _entry.add_param_file(p, "degradation.noise1.sigma=[1,10] (see a change before training)")
    p.add_argument("--recipe", help="whose crop size to show (default: the first recipe with degradation: "
                   "realworld, else the first recipe)")
    p.add_argument("-n", "--samples", type=int, default=8, help="crops to show (default %(default)s)")
    p.add_argument("--iteration", type=int, default=1, help="the training iteration whose draws to show "
                   "(default %(default)s)")
    p.add_argument("--images", metavar="DIR", help="crop from the photographs in DIR instead of the training store")
    p.add_argument("--out", default="reports/preview/degradations.png", help="the picture (default %(default)s; "
                   "the draws go to the same name with .json)")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from srgan_lib import tracking
    from srgan_lib.config.params import load_params
    from srgan_lib.data.preview import crops_from_folder, preview, write_preview
    from srgan_lib.data.store import StoreError, open_training_store
    from srgan_lib.training.data import PairedPatches

    if args.samples < 1 or args.iteration < 1:
        raise _entry.CLIError("--samples and --iteration must be >= 1")
    start = time.perf_counter()
    params = load_params(args.params, args.set or (), folders=False)
    names = params.recipes.names()
    recipe = args.recipe or next((r for r in names if params.stage(r).degradation == "realworld"), names[0])
    cfg, common = params.stage(recipe), params.train
    if args.images:
        hr = crops_from_folder(args.images, args.samples, cfg.hr_size, common.seed + args.iteration)
        source = args.images
    else:
        try:
            store = open_training_store(common.store, common.train_list, Path(common.lr_dir) / f"X{params.scale}",
                                        params.scale)
        except (StoreError, OSError) as exc:
            raise _entry.CLIError(f"{exc}; build the training store first (`dvc repro store`) or pass --images DIR"
                                  ) from None
        patches = PairedPatches(store, hr_size=cfg.hr_size, augment=cfg.augment, seed=common.seed)
        _, hr = patches.batch(args.iteration, args.samples)
        source = common.store
    settings = params.degradation.settings(params.scale)
    shown = preview(hr, settings, common.seed, args.iteration)
    picture, draws = write_preview(shown, args.out)
    uri = tracking.resolve_uri(params.tracking.uri)
    tracker = tracking.Tracker(uri, params.tracking.experiment, "data-preview",
                               tags={"srgan.kind": "preview", "srgan.recipe": recipe})
    tracker.log_params(tracking.flatten({"degradation": params.degradation.model_dump(), "scale": params.scale,
                                         "iteration": args.iteration, "hr_size": cfg.hr_size, "source": source}))
    tracker.log_image(Image.fromarray(shown.picture), "degradations", args.iteration)
    tracker.log_artifacts([picture, draws])
    tracker.end()
    where = f", MLflow run {tracker.run_id}" if tracker.run_id else ""
    print(f"preview: {args.samples} crops of {cfg.hr_size} px ({recipe}'s) from {source}, iteration "
          f"{args.iteration} -> {picture} (+ {draws.name}){where}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data preview"))
