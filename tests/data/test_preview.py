"""`srgan data preview`: the picture of training crops beside their real-world LR, drawn exactly as training draws
them (the HR crops of the training store's batch at that iteration, the chain keyed by (seed, iteration, sample)),
the draws beside it and in MLflow (a real SQLite store); photographs from a folder, corrupt ones skipped and named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from PIL import Image

from srgan_lib.config.params import load_params, override
from srgan_lib.data.degradations import degrade_batch
from srgan_lib.data.store import open_training_store
from srgan_lib.training.data import PairedPatches
from tests.conftest import BENCHMARKS, REPO, micro_overrides, run_cli


def test_preview_shows_what_training_draws_and_logs_it(micro_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from srgan_lib.tracking import PARENT_ENV

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*micro_overrides(micro_data, tmp_path, "rrdbnet"), "rrdbnet.degradation=realworld",
            f"tracking.uri={uri}"]
    out = tmp_path / "preview" / "deg.png"
    res = run_cli("data", "preview", "--set", *sets, "-n", "3", "--iteration", "7", "--out", str(out))
    assert "3 crops of 32 px (rrdbnet's)" in res.stdout and "iteration 7" in res.stdout
    picture = np.asarray(Image.open(out).convert("RGB"))
    # title 26 px, then per crop a row of 128 px (32 px crops enlarged 4x) with 4 px gaps
    assert picture.shape[0] == 26 + 3 * 128 + 2 * 4
    params = override(load_params(REPO / "params.yaml", folders=False), sets)
    store = open_training_store(params.train.store, params.train.train_list, micro_data / "lr" / "X4", 4)
    _, hr = PairedPatches(store, hr_size=32, augment=True, seed=params.train.seed).batch(7, 3)
    lr, draws = degrade_batch(hr.float() / 255, params.degradation.settings(4), params.train.seed, 7)
    assert np.array_equal(picture[26:26 + 128, :128], hr[0].permute(1, 2, 0).numpy().repeat(4, 0).repeat(4, 1))
    lr0 = (lr[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().repeat(16, 0).repeat(16, 1)
    assert np.array_equal(picture[26:26 + 128, 132:132 + 128], lr0)  # the LR beside it, enlarged by scale x 4
    saved = json.loads(out.with_suffix(".json").read_text())["samples"]
    assert saved == [json.loads(json.dumps(draws.describe(i))) for i in range(3)]
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name(params.tracking.experiment).experiment_id])[0]
    assert run.info.run_name == "data-preview" and run.data.params["degradation.jpeg2"] == "[30, 95]"
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"deg.png", "deg.json"} <= files


def test_preview_crops_a_folder_of_photographs_and_names_what_it_skipped(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(BENCHMARKS / "Set14" / "HR" / "zebra.png", photos)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    Image.new("RGB", (20, 20)).save(photos / "tiny.png")
    out = tmp_path / "p.png"
    res = run_cli("data", "preview", "--images", str(photos), "--set", "tracking.uri=none", "-n", "2", "--out",
                  str(out))
    assert res.returncode == 0 and out.is_file()
    assert "broken.png" in res.stderr and "tiny.png: smaller than the 64-pixel crop" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("data", "preview", "--images", str(empty), "--set", "tracking.uri=none", check=False)
    assert res.returncode == 2 and "no image of at least 64 x 64 pixels" in res.stderr
