"""The papers' networks: parameter counts, VGG19 cuts against torchvision, checkpoint key layouts, safe loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from srgan_lib.io.weights import DamagedCheckpoint, UnsafeCheckpoint
from srgan_lib.models import SPECS, build_model, count_parameters, load_generator_state
from srgan_lib.models.rrdbnet import RRDBNet, convert_legacy_state_dict
from srgan_lib.models.vgg import VGGFeatureExtractor, VGGWeightsMissing, vgg19_layer_names
from srgan_lib.training.checkpoint import load_checkpoint
from tests.conftest import run_cli

# the papers' configurations as counted by BasicSR (SRResNet 1.55 M, SRGAN's D 23.6 M, RRDBNet 16.7 M)
PAPER_COUNTS = {"srresnet": 1_549_462, "srgan_discriminator": 23_565_505, "rrdbnet": 16_697_987,
                "unet_discriminator_sn": 4_376_897}  # Real-ESRGAN sec. 3.4 / DESIGN.md section 10


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_parameter_counts(name):
    assert count_parameters(build_model(name)) == PAPER_COUNTS[name] == SPECS[name].paper_parameters
    assert {n for n, s in SPECS.items() if s.paper_parameters} == set(PAPER_COUNTS)


def test_esrgan_discriminator_is_about_14_5_million():
    assert count_parameters(build_model("esrgan_discriminator")) == pytest.approx(14.5e6, rel=0.01)


def test_shapes_and_ranges():
    torch.manual_seed(0)
    g = build_model("srresnet").eval()
    with torch.no_grad():
        out = g(torch.rand(2, 3, 12, 10))
    assert out.shape == (2, 3, 48, 40) and out.abs().max() <= 1  # tanh: [-1, 1]
    r = build_model("rrdbnet", num_block=2).eval()
    with torch.no_grad():
        assert r(torch.rand(1, 3, 7, 9)).shape == (1, 3, 28, 36)
    d = build_model("srgan_discriminator")
    assert d(torch.rand(2, 3, 96, 96)).shape == (2, 1)
    assert d(torch.rand(2, 3, 128, 128)).shape == (2, 1)  # other sizes through adaptive pooling
    assert build_model("esrgan_discriminator")(torch.rand(2, 3, 128, 128)).shape == (2, 1)


@pytest.mark.parametrize(("layer", "index"), [("relu5_4", 35), ("conv5_4", 34), ("relu2_2", 8)])
def test_vgg_cut_equals_torchvision_slice(layer, index):
    torch.manual_seed(0)
    ext = VGGFeatureExtractor(layer, weights="random")
    ref = vgg19().features[: index + 1]
    ref.load_state_dict(ext.features.state_dict())
    x = torch.rand(1, 3, 48, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ext(x), ref((x - mean) / std))
    assert vgg19_layer_names()[index] == layer
    assert not any(p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training


def test_vgg_loads_a_full_torchvision_state_dict_file(tmp_path):
    torch.manual_seed(1)
    full = vgg19()
    torch.save(full.state_dict(), tmp_path / "vgg19.pth")
    ext = VGGFeatureExtractor("relu2_2", weights=str(tmp_path / "vgg19.pth"))
    torch.testing.assert_close(ext.features[0].weight, full.features[0].weight)


def test_conv_cut_is_before_relu():
    ext = VGGFeatureExtractor("conv5_4", weights="random")
    with torch.no_grad():
        assert (ext(torch.rand(1, 3, 32, 32)) < 0).any()  # pre-activation features can be negative


def test_missing_imagenet_weights_say_what_to_do(tmp_path):
    # an empty torch cache and a download that fails for certain (through a proxy on a closed loopback port): the
    # real torchvision download path runs and fails the way it does on a machine without internet. In a process of
    # its own: urllib keeps the proxy of its first request for the rest of a process (the servers of other tests)
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update({"TORCH_HOME": str(tmp_path), **{v: "http://127.0.0.1:9" for v in
                                                 ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")}})
    code = ("from srgan_lib.models.vgg import VGGFeatureExtractor, VGGWeightsMissing\n"
            "try:\n    VGGFeatureExtractor('relu5_4', weights='imagenet')\n"
            "except VGGWeightsMissing as exc:\n    print(exc)\nelse:\n    raise SystemExit('no error')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    msg = res.stdout
    assert res.returncode == 0, res.stderr[-2000:]
    assert "vgg19-dcbb9e9d.pth" in msg and str(tmp_path) in msg and "copy it to" in msg
    assert "URLError" in msg  # the download was really attempted, and failed
    assert not list(tmp_path.rglob("*.pth"))  # nothing half-written left in the cache
    with pytest.raises(VGGWeightsMissing, match="not found"):
        VGGFeatureExtractor("relu5_4", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        VGGFeatureExtractor("relu6_1", weights="random")


def _esrgan_repo_names(state):
    out = {}
    for k, v in state.items():
        k = k.replace("body.", "RRDB_trunk.", 1) if k.startswith("body.") else k
        for i in (1, 2, 3):
            k = k.replace(f".rdb{i}.", f".RDB{i}.")
        k = (k.replace("conv_body.", "trunk_conv.").replace("conv_up1.", "upconv1.")
             .replace("conv_up2.", "upconv2.").replace("conv_hr.", "HRconv."))
        out[k] = v
    return out


def _sequential_names(state, nb):
    fixed = {"conv_first.": "model.0.", "conv_body.": f"model.1.sub.{nb}.", "conv_up1.": "model.3.",
             "conv_up2.": "model.6.", "conv_hr.": "model.8.", "conv_last.": "model.10."}
    out = {}
    for k, v in state.items():
        if k.startswith("body."):
            _, n, rdb, conv, kind = k.split(".")
            out[f"model.1.sub.{n}.RDB{rdb[-1]}.{conv}.0.{kind}"] = v
        else:
            prefix = next(p for p in fixed if k.startswith(p))
            out[fixed[prefix] + k[len(prefix):]] = v
    return out


def test_basicsr_checkpoint_loads_strict_and_legacy_layouts_match(tmp_path):
    torch.manual_seed(0)
    src = RRDBNet(num_block=3).eval()
    state = src.state_dict()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        ref = src(x)
    torch.save({"params_ema": state, "params": {k: v * 0 for k, v in state.items()}}, tmp_path / "basicsr.pth")
    torch.save(_esrgan_repo_names(state), tmp_path / "esrgan_repo.pth")
    torch.save(_sequential_names(state, 3), tmp_path / "old_arch.pth")
    for name in ("basicsr.pth", "esrgan_repo.pth", "old_arch.pth"):
        net = RRDBNet(num_block=3).eval()
        net.load_state_dict(load_generator_state(tmp_path / name), strict=True)
        with torch.no_grad():
            assert torch.equal(net(x), ref), name
    assert convert_legacy_state_dict(state).keys() == state.keys()  # BasicSR names pass through


def test_checkpoints_never_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"params": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpoint) as refused:
        load_generator_state(tmp_path / "evil.pth")
    message = str(refused.value)
    # our words: what was found, that it would run code, what to do; never PyTorch's advice to turn the check off
    assert "evil.pth" in message and "(it contains print)" in message and "would run code" in message
    assert "torch.save({'params': model.state_dict()}" in message and "weights_only=False" not in message
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_generator_state(tmp_path / "absent.pth")
    good = tmp_path / "good.pth"
    torch.save({"params": {"w": torch.zeros(3)}}, good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:100])  # an interrupted copy
    with pytest.raises(DamagedCheckpoint, match=r"cut\.pth.*truncated"):
        load_generator_state(tmp_path / "cut.pth")
    with pytest.raises(UnsafeCheckpoint, match="training checkpoint"):
        load_checkpoint(tmp_path / "evil.pth")


def test_models_summary_cli():
    info = json.loads(run_cli("models", "summary", "rrdbnet", "--json", "-").stdout)
    assert info["name"] == "rrdbnet" and info["parameters"] == 16_697_987
    small = json.loads(run_cli("models", "summary", "rrdbnet", "--option", "num_block=2", "--json", "-").stdout)
    assert small["parameters"] < info["parameters"] and small["options"] == {"num_block": 2}
    text = run_cli("models", "summary", "srresnet").stdout
    assert "1,549,462" in text
    assert run_cli("models", "summary", "vgg99", check=False).returncode == 2
