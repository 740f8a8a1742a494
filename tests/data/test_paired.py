"""Paired real data: a training folder laid out HR/ + LR/X4/ (camera pairs) keeps its own LR through the degrade
stage (pixel for pixel, marked paired in the manifest and the store) while other folders get MATLAB bicubic; a pair
whose sizes do not fit is refused naming the file; a realworld recipe trains on a paired sample's own LR with
probability paired_prob and on the chain's LR otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srgan_lib.data.degradations import DegradationSettings, degrade_batch
from srgan_lib.data.degrade import degrade, sources_from_list
from srgan_lib.data.embedded import write_embedded
from srgan_lib.data.lists import build_lists
from srgan_lib.data.resize import downsample, modcrop
from srgan_lib.data.store import build_store, open_training_store
from srgan_lib.io.images import read_image, write_png
from srgan_lib.training.data import PairedPatches
from srgan_lib.training.realworld import realworld_lr
from srgan_lib.training.stage import train_stage
from tests.conftest import BENCHMARKS, micro_params


def _camera_folder(root, names=("astronaut", "coffee")):
    """HR/ + LR/X4/: the LR a 'camera' took (Pillow's box filter plus a shift of grey: not the project's bicubic)."""
    write_embedded(root / "raw", list(names))
    for name in names:
        hr = read_image(root / "raw" / f"{name}.png")
        write_png(root / "cam" / "HR" / f"{name}.png", hr)
        lr = downsample(modcrop(hr, 4), 4, "pil").astype(np.int16) + 7
        write_png(root / "cam" / "LR" / "X4" / f"{name}.png", np.clip(lr, 0, 255).astype(np.uint8))
    return root / "cam"


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    cam = _camera_folder(root)
    write_embedded(root / "plain", ["chelsea"])
    build_lists([cam, root / "plain"], {"Set5": BENCHMARKS / "Set5"}, root / "lists", min_size=64)
    summary = degrade(sources_from_list(root / "lists" / "train.json"), root / "lr" / "X4", scale=4)
    build_store(root / "lists" / "train.json", root / "lr" / "X4", root / "store", scale=4)
    return root, summary


def test_a_folder_with_its_own_lr_keeps_it_and_others_get_bicubic(paired):
    root, summary = paired
    assert summary.written == 3 and summary.paired == 2
    own = read_image(root / "cam" / "LR" / "X4" / "coffee.png")
    assert np.array_equal(read_image(root / "lr" / "X4" / "coffee.png"), own)
    plain = modcrop(read_image(root / "plain" / "chelsea.png"), 4)
    assert np.array_equal(read_image(root / "lr" / "X4" / "chelsea.png"), downsample(plain, 4, "matlab"))
    items = json.loads((root / "lr" / "X4" / "manifest.json").read_text())["items"]
    assert {rel for rel, s in items.items() if "paired" in s} == {"astronaut.png", "coffee.png"}
    store = open_training_store(root / "store", root / "lists" / "train.json", root / "lr" / "X4", 4)
    assert sorted(store.paired(i) for i in range(len(store))) == [False, True, True]


def test_a_pair_whose_sizes_do_not_fit_is_refused_naming_the_file(tmp_path):
    cam = _camera_folder(tmp_path, ("coffee",))
    lr = read_image(cam / "LR" / "X4" / "coffee.png")
    write_png(cam / "LR" / "X4" / "coffee.png", lr[:-3])
    build_lists([cam], {}, tmp_path / "lists", min_size=64)
    with pytest.raises(ValueError, match=r"LR '.*coffee.png' is \d+x\d+, but its HR"):
        degrade(sources_from_list(tmp_path / "lists" / "train.json"), tmp_path / "lr", scale=4)


@pytest.mark.parametrize("paired_prob", [1.0, 0.0])
def test_realworld_inputs_keep_a_paired_samples_own_lr_with_paired_prob(paired, paired_prob):
    root, _ = paired
    store = open_training_store(root / "store", root / "lists" / "train.json", root / "lr" / "X4", 4)
    patches = PairedPatches(store, hr_size=32, augment=True, seed=0)
    lr_u8, hr_u8 = patches.batch(3, 8)
    own = patches.own_lr(3, 8)
    assert 0 < int(own.sum()) < 8  # both kinds in this batch
    s = DegradationSettings()
    lr, _ = realworld_lr(hr_u8.float() / 255, lr_u8.float() / 255, s, 0, 3, list(range(8)), own, paired_prob)
    synthetic, _ = degrade_batch(hr_u8.float() / 255, s, 0, 3)
    for i in range(8):
        kept = bool(own[i]) and paired_prob == 1.0
        assert torch.equal(lr[i], lr_u8[i].float() / 255 if kept else synthetic[i]), i


def test_a_realworld_recipe_trains_on_paired_and_synthetic_samples(paired, tmp_path):
    """With paired_prob 1 each sample of a paired image trains on its own LR, every other one on the chain's: the
    run's debug log of draws says so sample by sample, as the batches' image indices (drawn here again) dictate."""
    root, _ = paired
    params = micro_params(root, tmp_path, "rrdbnet", **{"rrdbnet.degradation": "realworld",
                                                       "degradation.paired_prob": 1.0,
                                                       "train.log_degradations": "true",
                                                       "train.val_list_realworld": root / "lists" / "Set5.json"})
    res = train_stage(params, "rrdbnet", progress=False)
    assert res.iterations == 6 and 0 < res.validation["psnr_y"] < 60
    logged = [json.loads(line) for line in (res.run_dir / "degradations.jsonl").read_text().splitlines()]
    store = open_training_store(root / "store", root / "lists" / "train.json", root / "lr" / "X4", 4)
    patches = PairedPatches(store, hr_size=32, augment=True, seed=params.train.seed)
    expected = [bool(own) for it in range(1, 7) for own in patches.own_lr(it, 4)]
    assert [d["own_lr"] for d in logged] == expected and 0 < sum(expected) < len(expected)
