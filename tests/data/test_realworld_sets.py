"""Real-world test sets (stage `realworld`): each image's LR is the degradation chain of its modcropped HR with a
draw fixed by (seed, set, image), byte-identical on a re-run; evaluation reads that LR (not bicubic of the HR:
checked against PSNR computed here from the files), and the report gives them a section of their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srgan_lib.config.paramfile import ParamsError
from srgan_lib.config.params import load_params, override
from srgan_lib.data.degradations import DegradationSettings, degrade_batch
from srgan_lib.data.lists import OWN_LR, build_lists
from srgan_lib.data.realworld import write_realworld_sets
from srgan_lib.data.resize import modcrop, upsample
from srgan_lib.io.images import read_image
from srgan_lib.metrics.psnr_ssim import psnr
from tests.conftest import BENCHMARKS, REPO, run_cli


@pytest.fixture(scope="module")
def rw(tmp_path_factory):
    root = tmp_path_factory.mktemp("rw")
    build_lists([], {"Set5": BENCHMARKS / "Set5"}, root / "lists", min_size=16)
    write_realworld_sets(root / "lists", ["Set5"], root / "rw", DegradationSettings(), seed=3)
    return root


def test_each_lr_is_the_chain_of_its_hr_with_a_draw_fixed_by_its_name(rw, tmp_path):
    hr = modcrop(read_image(BENCHMARKS / "Set5" / "HR" / "bird.png"), 4)
    lr = read_image(rw / "rw" / "Set5-RW" / "LR" / "X4" / "bird.png")
    assert lr.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)
    x = torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 255
    expected, _ = degrade_batch(x, DegradationSettings(), 3, "Set5/bird")
    assert np.array_equal(lr, (expected[0] * 255).round().byte().permute(1, 2, 0).numpy())
    assert psnr(upsample(lr, 4, "bicubic"), hr, shave=4) < 27  # visibly degraded (bicubic LR: 30.8 dB here)
    write_realworld_sets(rw / "lists", ["Set5"], tmp_path / "again", DegradationSettings(), seed=3)
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        a = (rw / "rw" / "Set5-RW" / "LR" / "X4" / f"{name}.png").read_bytes()
        assert a == (tmp_path / "again" / "Set5-RW" / "LR" / "X4" / f"{name}.png").read_bytes()
    listed = json.loads((rw / "rw" / "lists" / "Set5-RW.json").read_text())
    assert listed[OWN_LR] == "LR/X4" and [e["name"] for e in listed["images"]] == ["baby", "bird", "butterfly",
                                                                                     "head", "woman"]


def test_evaluation_reads_the_sets_own_lr_and_the_report_keeps_them_apart(rw, tmp_path):
    ev = tmp_path / "eval"
    run_cli("evaluate", "--model", "bicubic", "--lists", str(rw / "lists"), str(rw / "rw" / "lists"), "--json",
            str(ev / "bicubic.json"), "--sr-dir", str(tmp_path / "sr"))
    res = json.loads((ev / "bicubic.json").read_text())
    assert res["Set5"]["lr_source"] == "generate" and res["Set5-RW"]["lr_source"] == "own"
    by_hand = [psnr(upsample(read_image(rw / "rw" / "Set5-RW" / "LR" / "X4" / f"{n}.png"), 4, "bicubic"),
                    modcrop(read_image(BENCHMARKS / "Set5" / "HR" / f"{n}.png"), 4), shave=4)
               for n in ("baby", "bird", "butterfly", "head", "woman")]
    assert res["Set5-RW"]["psnr_y"] == pytest.approx(float(np.mean(by_hand)), abs=1e-9)
    assert res["Set5"]["psnr_y"] == pytest.approx(28.43, abs=0.01)  # the bicubic set unchanged (paper: 28.42)
    run_cli("report", "--eval", str(ev), "--sr-dir", str(tmp_path / "sr"), "-o", str(tmp_path / "report"))
    md = (tmp_path / "report" / "report.md").read_text()
    papers, realworld = md.split("## Real-world sets")
    assert "Set5-RW" not in papers and "Set5 PSNR-Y" in papers
    assert "| Bicubic | " in realworld and f"{res['Set5-RW']['psnr_y']:.2f}" in realworld
    assert (tmp_path / "report" / "figures" / "Set5-RW_bird.png").is_file()


def test_realworld_sets_must_be_test_sets():
    params = load_params(REPO / "params.yaml", folders=False)
    with pytest.raises(ParamsError, match=r"'realworld.sets\[0\]': 'Urban100' is not a test set"):
        override(params, ["realworld.sets=[Urban100]"])
