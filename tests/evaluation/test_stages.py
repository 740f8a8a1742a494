"""The evaluate stage as a library function: the same results the CLI prints, and --reuse taking the results of a
bit-identical network (the interpolation sweep's end points) only when the weights and the settings are equal."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from srgan_lib.evaluation.stage import EvaluateError, EvaluateSettings, run_evaluate, state_digest
from srgan_lib.models import build_model
from srgan_lib.models.interpolate import interpolate_files
from tests.conftest import BENCHMARKS


@pytest.fixture()
def small_set(tmp_path):
    """Two Set5 images (the smallest), as a test set folder."""
    root = tmp_path / "Set2" / "HR"
    root.mkdir(parents=True)
    for name in ("bird", "head"):
        shutil.copy(BENCHMARKS / "Set5" / "HR" / f"{name}.png", root / f"{name}.png")
    return ("Set2", str(tmp_path / "Set2"))


def _generator(path, seed: int) -> None:
    torch.manual_seed(seed)
    net = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4)
    torch.save({"params_ema": net.state_dict()}, path)


def test_interpolation_end_points_take_the_results_of_their_networks(tmp_path, small_set):
    _generator(tmp_path / "psnr.pth", 0)
    _generator(tmp_path / "gan.pth", 1)
    base = dict(sets=[small_set], tile=0)
    psnr = run_evaluate(EvaluateSettings(model=str(tmp_path / "psnr.pth"), json=str(tmp_path / "psnr.json"), **base))
    interp = tmp_path / "interp"
    interpolate_files(tmp_path / "psnr.pth", tmp_path / "gan.pth", [0.0, 0.5], interp)
    sweep = run_evaluate(EvaluateSettings(model=str(interp), json=str(tmp_path / "sweep"),
                                          reuse=[str(tmp_path / "psnr.json"), str(tmp_path / "missing.json")], **base))
    by_label = {e.label: e for e in sweep}
    assert by_label["interp_0.00"].reused_from == str(tmp_path / "psnr.json")
    assert by_label["interp_0.50"].reused_from is None  # a different network: evaluated
    # the reused numbers are those of the network evaluated from scratch, image by image
    fresh = run_evaluate(EvaluateSettings(model=str(interp / "interp_0.00.pth"), **base))[0]
    def numbers(e):  # NaN-aware (NIQE of a random network's flat output can be NaN)
        return json.dumps(e.results["Set2"]["images"], sort_keys=True, default=float)

    assert numbers(by_label["interp_0.00"]) == numbers(fresh)
    assert psnr[0].results["Set2"]["weights_sha256"] == fresh.results["Set2"]["weights_sha256"]
    saved = json.loads((tmp_path / "sweep" / "interp_0.00.json").read_text())
    assert saved["Set2"]["model"] == "interp_0.00" and saved["Set2"]["reused_from"] == str(tmp_path / "psnr.json")
    assert "interpolation alpha 0" in saved["Set2"]["configuration"]  # its own description, not the PSNR model's


def test_results_are_not_reused_under_other_settings(tmp_path, small_set):
    _generator(tmp_path / "g.pth", 0)
    run_evaluate(EvaluateSettings(model=str(tmp_path / "g.pth"), sets=[small_set], tile=0,
                                  json=str(tmp_path / "g.json")))
    copy = tmp_path / "copy.pth"
    shutil.copy(tmp_path / "g.pth", copy)
    other_kernel = run_evaluate(EvaluateSettings(model=str(copy), sets=[small_set], tile=0, kernel="pil",
                                                 reuse=[str(tmp_path / "g.json")]))[0]
    assert other_kernel.reused_from is None
    kept_images = run_evaluate(EvaluateSettings(model=str(copy), sets=[small_set], tile=0, sr_dir=str(tmp_path / "sr"),
                                                reuse=[str(tmp_path / "g.json")]))[0]
    assert kept_images.reused_from is None and (tmp_path / "sr" / "copy" / "Set2" / "bird.png").is_file()
    same = run_evaluate(EvaluateSettings(model=str(copy), sets=[small_set], tile=0,
                                         reuse=[str(tmp_path / "g.json")]))[0]
    assert same.reused_from == str(tmp_path / "g.json")


def test_state_digest_tells_networks_apart():
    a = build_model("srresnet", num_block=1, num_feat=8)
    b = build_model("srresnet", num_block=1, num_feat=8)
    b.load_state_dict(a.state_dict())
    assert state_digest(a) == state_digest(b)
    with torch.no_grad():
        b.conv_first.weight[0, 0, 0, 0] += 1e-7
    assert state_digest(a) != state_digest(b)


def test_bad_settings_are_one_line_errors(tmp_path, small_set):
    with pytest.raises(EvaluateError, match="no test set"):
        run_evaluate(EvaluateSettings(model="bicubic"))
    with pytest.raises(EvaluateError, match="no checkpoints"):
        run_evaluate(EvaluateSettings(model=str(tmp_path), sets=[small_set]))
    with pytest.raises(EvaluateError, match="unknown model 'bicubik'"):
        run_evaluate(EvaluateSettings(model="bicubik", sets=[small_set]))
