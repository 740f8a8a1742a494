"""LPIPS v0.1 against the authors' own package (`lpips`, BSD-2) on the same weights; the evaluation records it, or
records why it is unavailable (missing or wrong weight files), never an estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_lib.metrics.lpips import CHANNELS, LPIPS, LPIPSUnavailable, backbone_state, linear_state, resolve_lpips
from tests.conftest import BENCHMARKS, run_cli

lpips = pytest.importorskip("lpips")  # the authors' implementation (the [dev] extra)
AUTHORS_WEIGHTS = Path(lpips.__file__).parent / "weights" / "v0.1"


def _authors(net: str, random_backbone: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_backbone, verbose=False).eval()


def _features_state(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The authors' backbone (five slices of torchvision's ``features``) as one ``features`` state dict."""
    state = {}
    for i in range(1, 6):
        for name, module in getattr(ref.net, f"slice{i}").named_children():
            state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    return state


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_the_authors_package(net):
    ref = _authors(net, random_backbone=True)  # the real linear layers; a backbone we can have offline
    ours = LPIPS(net, linear_state(net, AUTHORS_WEIGHTS / f"{net}.pth"), _features_state(ref))
    x = torch.rand(3, 3, 70, 52)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    expected = ref(x, y, normalize=True).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=1e-7)
    assert ours(x, x).abs().max() < 1e-6
    assert len(ours.linear) == len(CHANNELS[net])


def test_lpips_with_the_imagenet_backbone_equals_the_authors_package():
    from torchvision.models import AlexNet_Weights

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    if not cached.is_file():  # never a download attempt from the test process (urllib would keep its proxy)
        pytest.skip(f"torchvision's ImageNet AlexNet weights are not cached at {cached}")
    backbone = backbone_state("alex")
    ours = LPIPS("alex", linear_state("alex", AUTHORS_WEIGHTS / "alex.pth"), backbone)
    ref = _authors("alex", random_backbone=False)
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert torch.allclose(ours(x, y), ref(x, y, normalize=True).flatten(), rtol=1e-5, atol=1e-7)


def test_wrong_or_missing_weights_are_refused_with_the_reason(tmp_path):
    with pytest.raises(LPIPSUnavailable, match="not found"):
        linear_state("alex", tmp_path / "alex.pth")
    with pytest.raises(LPIPSUnavailable, match="sha256"):
        linear_state("alex", AUTHORS_WEIGHTS / "vgg.pth")  # the other network's file
    with pytest.raises(LPIPSUnavailable, match="backbone"):
        resolve_lpips("alex", str(AUTHORS_WEIGHTS / "alex.pth"), "", str(tmp_path / "missing.pth"))


def test_evaluate_records_lpips_or_why_not(tmp_path):
    backbone = tmp_path / "alexnet_random.pth"
    torch.save({f"features.{k}": v for k, v in _features_state(_authors("alex", True)).items()}, backbone)
    common = ["evaluate", "--model", "bicubic", "--set", f"Set5={BENCHMARKS / 'Set5'}", "--lpips-net", "alex"]
    out = tmp_path / "on.json"
    run_cli(*common, "--lpips-weights", str(AUTHORS_WEIGHTS / "alex.pth"), "--lpips-backbone", str(backbone),
            "--json", str(out))
    res = json.loads(out.read_text())["Set5"]
    values = [v["lpips"] for v in res["images"].values()]
    assert len(values) == 5 and all(v > 0 for v in values)
    assert res["lpips"] == pytest.approx(float(np.mean(values)))
    assert "lpips" not in res["unavailable"] and res["lpips_model"]["net"] == "alex"

    off = tmp_path / "off.json"
    proc = run_cli(*common, "--lpips-weights", str(tmp_path / "nowhere.pth"), "--json", str(off))
    res = json.loads(off.read_text())["Set5"]
    assert "lpips" not in res and "nowhere.pth" in res["unavailable"]["lpips"]
    assert "LPIPS" in proc.stdout and "n/a" in proc.stdout  # the table's column says it was not measured
