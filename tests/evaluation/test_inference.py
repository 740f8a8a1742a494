"""Trained generators as SR methods: architecture recognised from the checkpoint, outputs, `srgan evaluate` on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srgan_lib.evaluation.methods import GeneratorMethod
from srgan_lib.models import build_model, count_parameters, infer_architecture, load_generator
from tests.conftest import BENCHMARKS, run_cli


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("srresnet", {"num_block": 16, "num_feat": 64, "scale": 4}),
        ("srresnet", {"num_block": 3, "num_feat": 16, "scale": 2}),
        ("rrdbnet", {"num_block": 23, "num_feat": 64, "num_grow_ch": 32}),
        ("rrdbnet", {"num_block": 2, "num_feat": 16, "num_grow_ch": 8}),
        ("rrdbnet", {"num_block": 2, "num_feat": 16, "num_grow_ch": 8, "scale": 2}),  # Real-ESRGAN x2plus layout
        ("rrdbnet", {"num_block": 1, "num_feat": 8, "num_grow_ch": 4, "scale": 1}),  # Real-ESRGAN x1 layout
    ],
)
def test_architecture_is_read_from_the_state_dict(name, options, tmp_path):
    net = build_model(name, **options)
    torch.save({"params": net.state_dict()}, tmp_path / "g.pth")
    model = load_generator(tmp_path / "g.pth")
    assert infer_architecture(net.state_dict()) == (name, options) and model.arch == (name, options)
    assert count_parameters(model.module) == count_parameters(net) and model.source == str(tmp_path / "g.pth")
    assert model.scale == options.get("scale", 4) and model.value_range == ((-1.0, 1.0) if name == "srresnet" else
                                                                          (0.0, 1.0))


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


def test_pixel_unshuffle_rrdbnet_checkpoints_upscale_at_their_scale(tmp_path):
    import torch.nn.functional as F

    from srgan_lib.inference.upscaler import Upscaler

    # Real-ESRGAN's x2plus: the x4 network (16,697,987 parameters) with conv_first on 12 = 3 x 2 x 2 channels,
    # i.e. 9 more input channels x 64 filters x 3 x 3 weights
    assert count_parameters(build_model("rrdbnet", scale=2)) == 16_697_987 + 9 * 64 * 9
    torch.manual_seed(0)
    net = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4, scale=2).eval()
    x = torch.rand(1, 3, 8, 10)
    with torch.no_grad():  # the layout: unshuffle by 2, then the x4 body (BasicSR's RRDBNet.forward for scale 2)
        feat = net.conv_first(F.pixel_unshuffle(x, 2))
        feat = feat + net.conv_body(net.body(feat))
        for conv in (net.conv_up1, net.conv_up2):
            feat = net.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        ref = net.conv_last(net.lrelu(net.conv_hr(feat)))
        assert torch.equal(net(x), ref) and ref.shape == (1, 3, 16, 20)
        assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 14, 18)  # odd sizes: padded, then cropped
    torch.save({"params_ema": net.state_dict()}, tmp_path / "x2.pth")
    up = Upscaler(str(tmp_path / "x2.pth"), device="cpu", tile=0)
    lr = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert up.scale == 2 and up.upscale_array(lr).shape == (14, 18, 3)
    state = net.state_dict()
    state["conv_first.weight"] = torch.zeros(8, 27, 3, 3)
    with pytest.raises(ValueError, match="conv_first takes 27 input channels"):
        infer_architecture(state)
