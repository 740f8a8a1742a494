"""What makes two training runs "the same run": one definition, used by resume, the DVC remote exchange and
``dvc.yaml``'s params lists (``tests/test_structure.py`` checks that the three agree).

The *trajectory* is every setting that shapes the weights a stage produces, step by step: its own section (less the
keys a run may be resumed with), the ``train`` keys in :data:`TRAIN_KEYS`, and ``scale``. A checkpoint is resumed only
under the same trajectory and the same inputs (:func:`config_hash`: the trajectory plus the content of the training
data and the ``init_from`` generator). :data:`OUTPUT_KEYS` change a stage's outputs (validation, delivered BatchNorm
statistics) or its speed but not its trajectory: DVC re-runs the stage for them, and the stage resumes its finished
run and writes the outputs again. The ``degradation`` section is part of the trajectory of the recipes trained on it
(``degradation: realworld``); DVC lists it for every training stage (one foreach), so a change re-runs the bicubic
ones too, which resume their finished runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from srgan_lib.config.params import Params
    from srgan_lib.config.sections import Degradation
    from srgan_lib.config.training import Recipe, Train

# Keys whose change does not alter the optimisation trajectory: a run may be resumed with different values
# (``deliver`` only picks which validated generator is written)
# (``iterations`` only under the multistep schedule: the cosine schedule is drawn over the whole run).
RESUMABLE_KEYS = ("iterations", "val_every", "ckpt_every", "log_every", "deliver")
# ``train`` keys that shape the trajectory (the rest are speed compute, places, or output-only settings)
TRAIN_KEYS = ("seed", "amp", "channels_last", "vgg_weights", "train_list", "lr_dir")
# params that change a training stage's outputs but not its trajectory (DVC re-runs the stage; it resumes)
OUTPUT_KEYS = ("train.fused_adam", "train.ema_foreach", "train.compile", "train.store", "train.val_list",
               "train.val_list_realworld", "train.val_images", "train.val_crop", "train.precise_bn", "degrade.kernel")


def trajectory(stage_cfg: Recipe, common: Train, scale: int, degradation: Degradation | None = None
               ) -> dict[str, Any]:
    """The settings that shape a stage's weights (module docstring), as plain values; a recipe trained on
    ``degradation: realworld`` inputs also depends on the ``degradation`` section (required then)."""
    resumable = RESUMABLE_KEYS if stage_cfg.schedule == "multistep" else RESUMABLE_KEYS[1:]
    blob = {"stage": stage_cfg.model_dump(exclude=set(resumable)),
            "train": common.model_dump(include=set(TRAIN_KEYS)), "scale": scale}
    if stage_cfg.degradation == "realworld":
        if degradation is None:
            raise ValueError("a realworld recipe's trajectory needs the degradation section")
        blob["degradation"] = degradation.model_dump()
    return blob


def _digest(blob: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trajectory_key(params: Params, section: str) -> str:
    """The trajectory of ``params``' training section ``section`` as 16 hex digits (the remote's checkpoint folder)."""
    return _digest(trajectory(params.stage(section), params.train, params.scale, params.degradation))


def config_hash(stage_cfg: Recipe, common: Train, scale: int,
                inputs: Mapping[str, str] | None = None, degradation: Degradation | None = None) -> str:
    """The trajectory and, in ``inputs``, the content of what the stage reads (:func:`input_digests`), so that a
    checkpoint made from another PSNR parent or other training photographs under the same paths is never resumed."""
    return _digest({**trajectory(stage_cfg, common, scale, degradation), "inputs": dict(inputs or {})})


def input_digests(stage_cfg: Recipe, common: Train, scale: int) -> dict[str, str]:
    """Content digests of a stage's inputs: the training data (the store's fingerprint: list + LR manifest), the
    ``init_from`` generator file and the ``init_d_from`` discriminator file. A missing input digests as 'missing'
    (opening it later gives the actionable error)."""
    from srgan_lib.data.store import fingerprint
    from srgan_lib.io.images import file_sha256

    try:
        data = fingerprint(common.train_list, Path(common.lr_dir) / f"X{scale}", scale)
    except OSError:
        data = "missing"
    def digest(path: str) -> str:
        return "none" if path == "none" else file_sha256(path) if Path(path).is_file() else "missing"

    return {"data": data, "init_from": digest(stage_cfg.init_from), "init_d_from": digest(stage_cfg.init_d_from)}


def dvc_params(section: str = "${key}") -> list[str]:
    """The params list of a training stage in ``dvc.yaml``: its trajectory and its output-only keys."""
    return ["scale", *(f"train.{k}" for k in TRAIN_KEYS), *OUTPUT_KEYS, "degradation", section]
