"""The prepared training store and the batches cut from it: decoded pixels equal Pillow's, crops are aligned (the LR
crop is the MATLAB-bicubic downsampling of the HR crop), batches are pure functions of (seed, iteration) in any worker,
and a missing, stale, truncated or half-built store is refused with the command that rebuilds it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import srgan_lib.data.store as store_mod
from srgan_lib.data.lists import read_list
from srgan_lib.data.resize import downsample
from srgan_lib.data.store import StoreError, TrainingStore, build_store, open_training_store
from srgan_lib.training.data import PairedPatches, batch_loader
from tests.conftest import micro_overrides, run_cli


def _open(micro_data):
    return open_training_store(micro_data / "store", micro_data / "lists" / "train.json", micro_data / "lr" / "X4", 4)


def test_store_holds_the_decoded_pairs(micro_data):
    store = _open(micro_data)
    entries = read_list(micro_data / "lists" / "train.json")["images"]
    assert len(store) == len(entries) == 3
    for i, entry in enumerate(store.images):
        hr = np.asarray(Image.open(entry["hr_path"]).convert("RGB"))
        h, w = hr.shape[0] // 4 * 4, hr.shape[1] // 4 * 4
        assert np.array_equal(store.hr(i), hr[:h, :w])
        assert np.array_equal(store.lr(i), np.asarray(Image.open(entry["lr_path"]).convert("RGB")))
        assert not store.hr(i).flags.writeable  # read-only memory map: training cannot corrupt it


@pytest.mark.parametrize("augment", [False, True])
def test_crops_are_aligned_and_a_pure_function_of_the_iteration(micro_data, augment):
    patches = PairedPatches(_open(micro_data), hr_size=48, augment=augment, seed=3)
    lr, hr = patches.batch(7, 8)
    assert lr.shape == (8, 3, 12, 12) and hr.shape == (8, 3, 48, 48) and lr.dtype == hr.dtype == torch.uint8
    again = patches.batch(7, 8)
    assert torch.equal(lr, again[0]) and torch.equal(hr, again[1])
    assert not torch.equal(hr, patches.batch(8, 8)[1])
    for k in range(8):
        # away from the crop border (the bicubic support), downsampling the HR crop gives the stored LR crop: the two
        # crops are aligned, and flips/transposes were applied to both alike
        mine = downsample(hr[k].permute(1, 2, 0).numpy(), 4, "matlab").astype(int)
        assert np.abs(mine[2:-2, 2:-2] - lr[k].permute(1, 2, 0).numpy()[2:-2, 2:-2].astype(int)).max() <= 1
    # DDP: rank slices of the global batch
    lr0, _ = patches.batch(7, 8, rank=0, world_size=2)
    lr1, _ = patches.batch(7, 8, rank=1, world_size=2)
    assert torch.equal(torch.cat([lr0, lr1]), lr)


def test_worker_processes_give_the_same_batches(micro_data):
    patches = PairedPatches(_open(micro_data), hr_size=32, augment=True, seed=0)
    loader = batch_loader(patches, range(5, 11), 4, workers=2, pin_memory=False)
    got = list(loader)
    assert len(got) == 6
    for it, (lr, hr) in zip(range(5, 11), got, strict=True):
        ref_lr, ref_hr = patches.batch(it, 4)
        assert torch.equal(lr, ref_lr) and torch.equal(hr, ref_hr)


def test_missing_stale_and_truncated_stores_are_refused(micro_data, tmp_path):
    lst, lr_dir = micro_data / "lists" / "train.json", micro_data / "lr" / "X4"
    with pytest.raises(StoreError, match=r"not found or incomplete.*srgan data store --list"):
        open_training_store(tmp_path / "nowhere", lst, lr_dir, 4)
    changed = tmp_path / "train.json"
    data = json.loads(lst.read_text())
    data["images"] = data["images"][:2]
    changed.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=r"is stale.*srgan data store"):
        open_training_store(micro_data / "store", changed, lr_dir, 4)
    with pytest.raises(StoreError, match=r"is stale.*--scale 2"):
        open_training_store(micro_data / "store", lst, lr_dir, 2)
    copy = tmp_path / "copy"
    shutil.copytree(micro_data / "store", copy)
    with open(copy / "hr.u8", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(StoreError, match=r"hr.u8' is missing or truncated"):
        TrainingStore(copy)
    # a store for these inputs built somewhere else is accepted: the fingerprint is content, not paths or times
    build_store(lst, lr_dir, tmp_path / "other", scale=4)
    assert len(open_training_store(tmp_path / "other", lst, lr_dir, 4)) == 3


def test_a_failed_build_leaves_the_old_store_or_none(micro_data, tmp_path, monkeypatch):
    lst, lr_dir, out = micro_data / "lists" / "train.json", micro_data / "lr" / "X4", tmp_path / "store"
    real, calls = store_mod.read_image, []

    def dies_on_the_fourth_read(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real(path)

    monkeypatch.setattr(store_mod, "read_image", dies_on_the_fourth_read)
    with pytest.raises(KeyboardInterrupt):
        build_store(lst, lr_dir, out, scale=4)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half-built store, no temporary left
    monkeypatch.setattr(store_mod, "read_image", real)
    build_store(lst, lr_dir, out, scale=4)
    index = (out / "index.json").read_text()
    calls.clear()
    monkeypatch.setattr(store_mod, "read_image", dies_on_the_fourth_read)
    with pytest.raises(KeyboardInterrupt):
        build_store(lst, lr_dir, out, scale=4)
    assert (out / "index.json").read_text() == index and len(open_training_store(out, lst, lr_dir, 4)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_store_cli_and_training_without_a_store(micro_data, tmp_path):
    out = run_cli("data", "store", "--list", str(micro_data / "lists" / "train.json"), "--lr-dir",
                  str(micro_data / "lr" / "X4"), "--out", str(tmp_path / "s"))
    assert "store: 3 training pairs ->" in out.stdout and "MiB" in out.stdout
    proc = run_cli("train", "srresnet", "--no-progress", "--set",
                   *micro_overrides(micro_data, tmp_path, "srresnet", **{"train.store": tmp_path / "missing"}),
                   check=False)
    assert proc.returncode == 2  # a user error: one line, no traceback
    assert "not found or incomplete" in proc.stderr and "srgan data store --list" in proc.stderr
