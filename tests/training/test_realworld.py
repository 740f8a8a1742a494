"""Training on Real-ESRGAN's real-world inputs: params.yaml's ``degradation`` section holds the published x4plus
numbers (written here from ../shared/DESIGN.md section 10, independently of the code) and refuses bad values by key;
a ``degradation: realworld`` recipe sees LR made from its HR by the chain, keyed by (seed, iteration, global sample),
so DDP ranks take their slice of the one-process batch; USM targets reach the loss terms that ask for them."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from srgan_lib.config.paramfile import ParamsError
from srgan_lib.config.params import load_params, override
from srgan_lib.data.degradations import DegradationSettings, degrade_batch, usm_sharp
from srgan_lib.training.distributed import Dist
from srgan_lib.training.stage import train_stage
from srgan_lib.training.trainer import Trainer
from tests.conftest import REPO, micro_params

X4PLUS = {  # train_realesrnet_x4plus.yml, as DESIGN.md section 10 lists it
    "blur1": {"kernel_probs": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sigma": [0.2, 3.0], "betag": [0.5, 4.0],
              "betap": [1.0, 2.0], "sinc_prob": 0.1, "sizes": [7, 21]},
    "resize1": {"probs": [0.2, 0.7, 0.1], "scale": [0.15, 1.5], "mode_probs": [1 / 3, 1 / 3, 1 / 3]},
    "noise1": {"gaussian_prob": 0.5, "sigma": [1.0, 30.0], "poisson_scale": [0.05, 3.0], "gray_prob": 0.4},
    "jpeg1": [30, 95], "blur2_prob": 0.8,
    "blur2": {"kernel_probs": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sigma": [0.2, 1.5], "betag": [0.5, 4.0],
              "betap": [1.0, 2.0], "sinc_prob": 0.1, "sizes": [7, 21]},
    "resize2": {"probs": [0.3, 0.4, 0.3], "scale": [0.3, 1.2], "mode_probs": [1 / 3, 1 / 3, 1 / 3]},
    "noise2": {"gaussian_prob": 0.5, "sigma": [1.0, 25.0], "poisson_scale": [0.05, 2.5], "gray_prob": 0.4},
    "jpeg2": [30, 95], "final_sinc_prob": 0.8, "sinc_first_prob": 0.5, "paired_prob": 1.0,
}


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return math.isclose(float(a), float(b), rel_tol=1e-12)


def test_params_yaml_holds_the_published_x4plus_degradation_and_it_is_the_library_default():
    params = load_params(REPO / "params.yaml", folders=False)
    assert _close(params.degradation.model_dump(), X4PLUS)
    assert params.degradation.settings(4) == DegradationSettings()


@pytest.mark.parametrize("change,key", [
    ("degradation.blur1.sigma=[3.0, 1.0]", "'degradation.blur1.sigma'"),
    ("degradation.blur1.sigma=[-1.0, 2.0]", "'degradation.blur1.sigma\\[0\\]'"),
    ("degradation.blur2.kernel_probs=[0.5, 0.5, 0.5, 0.0, 0.0, 0.0]", "'degradation.blur2.kernel_probs'"),
    ("degradation.blur1.sizes=[8, 21]", "'degradation.blur1.sizes'"),
    ("degradation.jpeg1=[0, 95]", "'degradation.jpeg1'"),
    ("degradation.jpeg2=[30, 101]", "'degradation.jpeg2'"),
    ("degradation.noise1.gray_prob=1.5", "'degradation.noise1.gray_prob'"),
    ("degradation.resize2.scale=[1.2]", "'degradation.resize2.scale'"),
    ("rrdbnet.degradation=jpeg", "'rrdbnet.degradation'"),
])
def test_bad_degradation_params_are_refused_naming_the_key(change, key):
    params = load_params(REPO / "params.yaml", folders=False)
    with pytest.raises(ParamsError, match=key):
        override(params, [change])


def _realworld(micro_data, tmp_path, **extra: object):
    return micro_params(micro_data, tmp_path, "rrdbnet", **{"rrdbnet.degradation": "realworld", **extra})


def test_realworld_inputs_are_the_chain_of_the_hr_and_ddp_ranks_take_their_slice(micro_data, tmp_path):
    params = _realworld(micro_data, tmp_path)
    trainer = Trainer("rrdbnet", params, torch.device("cpu"), Dist())
    hr_u8 = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    lr_u8 = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)  # what the store would give: not used
    lr, hr01 = trainer.inputs(lr_u8, hr_u8, iteration=5)
    expected, _ = degrade_batch(hr_u8.float() / 255, params.degradation.settings(4), params.train.seed, 5)
    assert torch.equal(lr, expected) and torch.equal(hr01, hr_u8.float() / 255)
    assert not torch.equal(lr, trainer.inputs(lr_u8, hr_u8, iteration=6)[0])  # the next batch draws anew
    trainer.ddp = Dist(rank=1, world_size=2)  # rank 1 of 2 holds global samples 2, 3 of the batch
    half, _ = trainer.inputs(lr_u8[2:], hr_u8[2:], iteration=5)
    assert torch.equal(half, expected[2:])


def test_usm_targets_reach_the_pixel_loss_that_asks_for_them(micro_data, tmp_path):
    params = _realworld(micro_data, tmp_path, **{"rrdbnet.pixel.usm": "true", "train.amp": "none"})
    trainer = Trainer("rrdbnet", params, torch.device("cpu"), Dist())
    hr_u8 = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    lr, hr01 = trainer.inputs(hr_u8[:, :, ::4, ::4], hr_u8, iteration=1)
    with torch.no_grad():
        sr = trainer.net_g(lr)
    terms = trainer.step(hr_u8[:, :, ::4, ::4], hr_u8, iteration=1)
    assert float(terms["pixel"]) == pytest.approx(float(F.l1_loss(sr, usm_sharp(hr01))), rel=1e-5)
    assert float(terms["pixel"]) != pytest.approx(float(F.l1_loss(sr, hr01)), rel=1e-3)


def test_a_realworld_recipe_trains_logs_its_draws_and_says_so(micro_data, tmp_path, monkeypatch):
    """Trained end to end with MLflow (a real SQLite store): the draws' summary as metrics per logged window (each a
    frequency in [0, 1] or a mean within its setting's range), the section as params, every sample's draws in the
    debug log (iteration x batch lines), and the checkpoint says what trained it."""
    from mlflow.tracking import MlflowClient

    from srgan_lib.tracking import PARENT_ENV

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = _realworld(micro_data, tmp_path, **{"rrdbnet.pixel.usm": "true", "train.log_degradations": "true",
                                                 "tracking.uri": uri})
    res = train_stage(params, "rrdbnet", progress=False)
    meta = torch.load(res.model_path, map_location="cpu", weights_only=True)["meta"]
    assert meta["degradation"] == "realworld" and meta["losses"]["pixel"] == "l1 x 1 (USM targets)"
    assert 0 < res.validation["psnr_y"] < 60
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(res.mlflow_run_id)
    assert run.data.params["degradation.jpeg1"] == "[30, 95]"
    jpeg = client.get_metric_history(run.info.run_id, "degradation.jpeg1.mean")
    assert [m.step for m in jpeg] == [1, 2, 3, 4, 5, 6] and all(30 <= m.value <= 95 for m in jpeg)
    assert 0 <= run.data.metrics["degradation.noise1.gaussian"] <= 1
    lines = [json.loads(line) for line in (res.run_dir / "degradations.jsonl").read_text().splitlines()]
    assert [(d["iteration"], d["sample"]) for d in lines] == [(i, s) for i in range(1, 7) for s in range(4)]
    assert all(30 <= d["jpeg1"] <= 95 and d["blur1"]["size"] in range(7, 22, 2) for d in lines)
