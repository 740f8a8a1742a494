"""Trained generators as SR methods: architecture recognised from the checkpoint, outputs, `srgan evaluate` on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srgan_lib.inference import GeneratorMethod
from srgan_lib.models import build_model, count_parameters, infer_architecture, load_generator
from tests.conftest import BENCHMARKS, run_cli


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("srresnet", {"num_block": 16, "num_feat": 64, "scale": 4}),
        ("srresnet", {"num_block": 3, "num_feat": 16, "scale": 2}),
        ("rrdbnet", {"num_block": 23, "num_feat": 64, "num_grow_ch": 32}),
        ("rrdbnet", {"num_block": 2, "num_feat": 16, "num_grow_ch": 8}),
    ],
)
def test_architecture_is_read_from_the_state_dict(name, options, tmp_path):
    net = build_model(name, **options)
    torch.save({"params": net.state_dict()}, tmp_path / "g.pth")
    model = load_generator(tmp_path / "g.pth")
    assert infer_architecture(net.state_dict()) == (name, options) and model.arch == (name, options)
    assert count_parameters(model) == count_parameters(net)


def test_generator_method_maps_uint8_through_the_output_range(tmp_path):
    torch.manual_seed(0)
    net = build_model("srresnet", num_block=2, num_feat=16)
    torch.save({"params_ema": net.state_dict(), "params": build_model("srresnet", num_block=2, num_feat=16)
                .state_dict()}, tmp_path / "g.pth")
    method = GeneratorMethod(load_generator(tmp_path / "g.pth"))  # EMA weights by default
    lr = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    sr = method(lr)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0]
    expected = ((ref.permute(1, 2, 0).numpy() + 1) / 2 * 255).round().clip(0, 255)  # tanh output in [-1, 1]
    assert sr.shape == (40, 48, 3) and sr.dtype == np.uint8
    assert np.abs(sr.astype(int) - expected).max() <= 1


def test_evaluate_cli_on_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    torch.save({"params": build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4).state_dict()},
               tmp_path / "tiny.pth")
    out = run_cli("evaluate", "--model", str(tmp_path / "tiny.pth"), "--set", f"Set5={BENCHMARKS / 'Set5'}",
                  "--json", str(tmp_path / "r.json"))
    assert "tiny" in out.stdout
    res = json.loads((tmp_path / "r.json").read_text())["Set5"]
    assert res["model"] == "tiny" and res["n_images"] == 5
    assert 0 < res["psnr_y"] < 28.43  # an untrained network is worse than bicubic
    bad = run_cli("evaluate", "--model", str(tmp_path / "tiny.pth"), "--set", f"Set5={BENCHMARKS / 'Set5'}",
                  "--scale", "2", check=False)
    assert bad.returncode == 2 and "x4 generator" in bad.stderr
