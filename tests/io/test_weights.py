"""Generator weights as safetensors: written by `srgan export --format safetensors` and `srgan interpolate`, read
everywhere a .pth is read (by content), checked against the safetensors library itself; malformed files refused
with the file named."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from srgan_lib.inference.upscaler import Upscaler
from srgan_lib.io.weights import DamagedCheckpoint, load_weights, save_generator_safetensors
from srgan_lib.models import build_model, checkpoint_meta, load_generator
from tests.conftest import run_cli

META = {"stage": "tiny", "generator": "rrdbnet", "iterations": 3}


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    live = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4).state_dict()
    torch.manual_seed(1)
    ema = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4).state_dict()
    path = tmp_path / "tiny.pth"
    torch.save({"params": live, "params_ema": ema, "meta": META}, path)
    return path, live, ema


def test_export_safetensors_round_trip_matches_the_pth(tmp_path):
    path, live, ema = _checkpoint(tmp_path)
    out = tmp_path / "tiny.safetensors"
    proc = run_cli("export", "--model", str(path), "--format", "safetensors", "-o", str(out))
    assert "safetensors, params_ema weights" in proc.stdout
    flat = load_file(str(out))  # the library's own reader: a flat state dict, as spandrel/chaiNNer expect
    assert flat.keys() == ema.keys() and all(torch.equal(flat[k], ema[k]) for k in ema)
    assert checkpoint_meta(out) == META
    image = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    a = Upscaler(load_generator(path), device="cpu", tile=0).upscale_array(image)
    b = Upscaler(str(out), device="cpu", tile=0).upscale_array(image)
    assert np.array_equal(a, b)
    live_out = tmp_path / "live.safetensors"
    run_cli("export", "--model", str(path), "--format", "safetensors", "--no-ema", "-o", str(live_out))
    assert all(torch.equal(load_file(str(live_out))[k], live[k]) for k in live)


def test_safetensors_from_elsewhere_and_interpolation(tmp_path):
    path, _, ema = _checkpoint(tmp_path)
    foreign = tmp_path / "foreign.weights"  # a bare state dict, any file name: recognised by content
    save_file(ema, str(foreign))
    gen = load_generator(foreign)
    assert gen.architecture == "rrdbnet" and checkpoint_meta(foreign) == {}
    run_cli("interpolate", "--psnr", str(path), "--gan", str(foreign), "--alpha", "0", "1", "-o",
            str(tmp_path / "interp"), "--format", "safetensors")
    end = load_weights(tmp_path / "interp" / "interp_1.00.safetensors")
    assert end["meta"]["alpha"] == 1.0 and all(torch.equal(end["params"][k], ema[k]) for k in ema)


def test_malformed_safetensors_are_refused_with_the_file_named(tmp_path):
    _, _, ema = _checkpoint(tmp_path)
    good = tmp_path / "good.safetensors"
    save_generator_safetensors({"params": ema, "meta": META}, good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DamagedCheckpoint, match=r"truncated\.safetensors"):
        load_weights(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DamagedCheckpoint, match=r"garbage\.safetensors.*safetensors header"):
        load_weights(garbage)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1000]}}).encode()
    lying = tmp_path / "lying.safetensors"  # a header promising more bytes than the file has
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(DamagedCheckpoint, match=r"lying\.safetensors"):
        load_weights(lying)
    bad_meta = tmp_path / "meta.safetensors"
    save_file(ema, str(bad_meta), metadata={"srgan.meta": "{not json"})
    with pytest.raises(DamagedCheckpoint, match="not JSON"):
        load_weights(bad_meta)
    proc = run_cli("upscale", "--model", str(truncated), str(tmp_path), "-o", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "truncated.safetensors" in proc.stderr
