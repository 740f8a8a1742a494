"""Where a recipe starts (srgan_lib.training.initial): ``init_from`` reads a generator in every layout published
Real-ESRGAN / BasicSR / ESRGAN files use (the EMA weights preferred), ``init_d_from`` a discriminator in
Real-ESRGAN's ``RealESRGAN_x4plus_netD.pth`` layout (spectral-norm keys ``weight_orig/_u/_v``) or one of our
training checkpoints; files that do not fit are refused naming the file and what it holds. The files are written
here in those layouts, from networks built independently of the loader."""

from __future__ import annotations

import pytest
import torch

from srgan_lib.config.params import ParamsError
from srgan_lib.models import build_model
from srgan_lib.training.distributed import Dist
from srgan_lib.training.trainer import Trainer
from tests.conftest import micro_params

G_OPTS = {"num_block": 1, "num_feat": 16, "num_grow_ch": 8}  # configs/micro.yaml's realesrgan


def _trainer(micro_data, tmp_path, **extra) -> Trainer:
    return Trainer("realesrgan", micro_params(micro_data, tmp_path, "realesrgan", **extra), torch.device("cpu"), Dist())


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)


def _esrgan_repo_keys(state: dict) -> dict:
    """BasicSR names -> the original ESRGAN repository's (RRDB_trunk.N.RDBk.convj, trunk_conv, upconv1, HRconv)."""
    names = {"conv_body.": "trunk_conv.", "conv_up1.": "upconv1.", "conv_up2.": "upconv2.", "conv_hr.": "HRconv."}
    out = {}
    for k, v in state.items():
        for a, b in names.items():
            k = k.replace(a, b) if k.startswith(a) else k
        if k.startswith("body."):
            _, n, rdb, rest = k.split(".", 3)
            k = f"RRDB_trunk.{n}.{rdb.upper()}.{rest}"
        out[k] = v
    return out


@pytest.mark.parametrize("layout", ["basicsr_ema", "basicsr_params", "bare", "esrgan_repo", "safetensors"])
def test_init_from_reads_the_published_generator_layouts(layout, micro_data, tmp_path):
    torch.manual_seed(1)
    live, ema = (build_model("rrdbnet", **G_OPTS).state_dict() for _ in range(2))
    path = tmp_path / ("g.safetensors" if layout == "safetensors" else "g.pth")
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file(ema, str(path))
    else:
        obj = {"basicsr_ema": {"params": live, "params_ema": ema}, "basicsr_params": {"params": ema},
               "bare": ema, "esrgan_repo": _esrgan_repo_keys(ema)}[layout]
        torch.save(obj, path)
    trainer = _trainer(micro_data, tmp_path, **{"realesrgan.init_from": path})
    assert _equal(trainer.net_g.state_dict(), ema)  # params_ema preferred over params
    assert _equal(trainer.ema.model.state_dict(), ema)  # the EMA starts from the same weights
    assert trainer.meta()["init_from"] == str(path)


def test_init_from_refuses_another_architecture_naming_what_the_file_holds(micro_data, tmp_path):
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": build_model("rrdbnet", num_block=2, num_feat=16, num_grow_ch=8).state_dict()}, path)
    with pytest.raises(ValueError, match=r"RealESRGAN_x4plus.pth' does not fit 'realesrgan': rrdbnet .*num_block': 1"
                                         r".*holds a rrdbnet with \{'num_block': 2"):
        _trainer(micro_data, tmp_path, **{"realesrgan.init_from": path})
    with pytest.raises(FileNotFoundError, match=r"'realesrgan.init_from': generator checkpoint .*missing.pth"):
        _trainer(micro_data, tmp_path, **{"realesrgan.init_from": tmp_path / "missing.pth"})


def _trained_discriminator(steps: int = 3) -> torch.nn.Module:
    """A U-Net SN discriminator whose weights and power-iteration vectors have moved away from a fresh one's."""
    torch.manual_seed(2)
    d = build_model("unet_discriminator_sn", num_feat=8)
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        d(torch.rand(2, 3, 32, 32)).mean().backward()
        opt.step()
    return d


@pytest.mark.parametrize("layout", ["netD", "bare", "ours"])
def test_init_d_from_reads_real_esrgans_netd_layout_and_our_checkpoints(layout, micro_data, tmp_path):
    state = _trained_discriminator().state_dict()
    assert {"conv1.weight_orig", "conv1.weight_u", "conv1.weight_v"} <= state.keys()  # the published file's keys
    path = tmp_path / "RealESRGAN_x4plus_netD.pth"
    torch.save({"netD": {"params": state}, "bare": state,
                "ours": {"generator": {}, "discriminator": state, "iteration": 5}}[layout], path)
    trainer = _trainer(micro_data, tmp_path, **{"realesrgan.init_d_from": path})
    assert _equal(trainer.net_d.state_dict(), state)
    assert trainer.meta()["init_d_from"] == str(path)
    fresh = _trainer(micro_data, tmp_path / "fresh")
    assert not _equal(fresh.net_d.state_dict(), state)


def test_init_d_from_refuses_what_does_not_fit(micro_data, tmp_path):
    path = tmp_path / "netD.pth"
    torch.save({"params": build_model("unet_discriminator_sn", num_feat=16).state_dict()}, path)
    with pytest.raises(ValueError, match=r"netD.pth' does not fit 'realesrgan': unet_discriminator_sn with "
                                         r"discriminator_options \{'num_feat': 8\}"):
        _trainer(micro_data, tmp_path, **{"realesrgan.init_d_from": path})
    torch.save({"params": {"conv0.weight": [1, 2]}}, path)
    with pytest.raises(ValueError, match="holds no discriminator state dict"):
        _trainer(micro_data, tmp_path, **{"realesrgan.init_d_from": path})
    with pytest.raises(FileNotFoundError, match=r"'realesrgan\.init_d_from': discriminator file"):
        _trainer(micro_data, tmp_path, **{"realesrgan.init_d_from": tmp_path / "none.pth"})
    with pytest.raises(ParamsError, match=r"'realesrnet\.init_d_from': there is no discriminator"):
        micro_params(micro_data, tmp_path, "realesrnet", **{"realesrnet.init_d_from": path})
