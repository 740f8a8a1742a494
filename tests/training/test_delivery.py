"""``deliver``: a finished run ships the generator of its best validation (highest PSNR-Y / lowest NIQE, the EMA's
score) rather than its last step, so a fine-tune that drifts late does not silently ship the drift. Checked against
the run's own validation.csv and by validating the delivered file again with the validator."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from srgan_lib.models import build_model
from srgan_lib.training import TrainingError
from srgan_lib.training.stage import train_stage
from srgan_lib.training.validation import Validator
from tests.conftest import MICRO, micro_params


def test_deliver_psnr_y_ships_the_best_validated_generator(micro_data, tmp_path):
    stage = "realesrnet"
    parent = train_stage(micro_params(micro_data, tmp_path / "parent", "rrdbnet", **{
        "rrdbnet.iterations": 40, "rrdbnet.milestones": "[]", "rrdbnet.lr": 2e-3}), "rrdbnet", progress=False)
    # from a trained parent with a learning rate that overshoots, validated every iteration: the best PSNR-Y is
    # not the last one's (EMA PSNR-Y 10.2, 11.9, 17.1, 15.9, 14.4, 13.8 on AMX; lr 0.05 sent the pixel loss to 2e4,
    # which the divergence guard stops)
    params = micro_params(micro_data, tmp_path, stage, **{
        f"{stage}.init_from": parent.model_path, f"{stage}.deliver": "psnr_y", f"{stage}.val_every": 1,
        f"{stage}.lr": 0.005, f"{stage}.ema_decay": 0.5})
    res = train_stage(params, stage, progress=False)
    rows = list(csv.DictReader((res.run_dir / "validation.csv").open()))
    scores = [(float(r["ema_psnr_y"]), -int(r["iteration"])) for r in rows]
    best = -max(scores)[1]
    assert len(rows) == 6 and best != 6, rows  # the overshoot made an earlier iteration the best
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["validation"]["iteration"] == best
    ckpt = torch.load(res.model_path, map_location="cpu", weights_only=True)
    assert ckpt["meta"]["delivered"]["iteration"] == best and ckpt["meta"]["iterations"] == 6
    best_file = torch.load(res.run_dir / "best.pth", map_location="cpu", weights_only=True)
    assert all(torch.equal(ckpt["params_ema"][k], v) for k, v in best_file["params_ema"].items())
    # validating the delivered weights again gives the score they were picked by
    net = build_model("rrdbnet", **MICRO[stage]["generator_options"])
    net.load_state_dict(ckpt["params_ema"])
    val = Validator(params.train.val_list_realworld, params.train.val_images, params.train.val_crop, 4)
    again, _ = val.run(net, (0.0, 1.0), torch.device("cpu"), res_compute(params))
    assert again["psnr_y"] == pytest.approx(float(rows[best - 1]["ema_psnr_y"]), abs=1e-9)


def res_compute(params):
    from srgan_lib.hardware import resolve_compute_format

    return resolve_compute_format(torch.device("cpu"), params.train.amp, params.train.channels_last)


def test_deliver_last_is_the_final_step_and_niqe_needs_niqe_sized_crops(micro_data, tmp_path):
    stage = "realesrnet"
    res = train_stage(micro_params(micro_data, tmp_path, stage), stage, progress=False)
    meta = torch.load(res.model_path, map_location="cpu", weights_only=True)["meta"]
    assert "delivered" not in meta and not (res.run_dir / "best.pth").exists()
    assert json.loads((res.run_dir / "summary.json").read_text())["validation"]["iteration"] == 6
    with pytest.raises(TrainingError, match=r"deliver: niqe needs niqe in the validation.*val_crop >= 200"):
        train_stage(micro_params(micro_data, tmp_path / "n", stage, **{f"{stage}.deliver": "niqe"}), stage,
                    progress=False)
