"""The benchmark scripts run end to end on CPU and write the figures the issue names (their numbers are measured
by running them, never asserted here: timings belong in benchmarks/results/, not in tests)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_data_benchmark_writes_both_paths(tmp_path):
    out = _run("data.py", "--n-images", "2", "--sizes", "96", "--seconds", "0.3", "--json", str(tmp_path / "d.json"))
    assert "store samples/s" in out and "decode samples/s" in out
    row = json.loads((tmp_path / "d.json").read_text())["96"]
    assert {"store_samples_per_s", "decode_samples_per_s", "ratio"} <= row.keys()
    assert row["store_samples_per_s"] > 0 and row["decode_samples_per_s"] > 0


def test_degradation_benchmark_puts_the_chain_beside_the_training_step(tmp_path):
    out = _run("degradations.py", "--repeats", "1", "--json", str(tmp_path / "g.json"))
    assert "target <= 0.15" in out
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert set(rows) == {"x4plus batch 12 GT 256", "embedded srresnet batch 16 HR 64",
                         "embedded rrdbnet batch 16 HR 64"}
    for row in rows.values():
        assert row["ours_vs_reference"] > 0 and row["batches_per_s"] > 0
        assert row.get("degradation_share_of_step", 1) > 0
    # the per-sample reference builds its kernels in NumPy/SciPy and takes our draws: the same LR, up to the rare
    # pixel where a last-bit difference before a JPEG round trip flips a rounding (then a whole 8x8 block moves)
    assert rows["embedded srresnet batch 16 HR 64"]["max_diff_levels"] <= 64


def test_train_step_benchmark_matches_the_reference_loss(tmp_path):
    out = _run("train_step.py", "--recipes", "srresnet", "--steps", "1", "--warmup", "0", "--json",
               str(tmp_path / "t.json"))
    assert "ratio" in out
    row = json.loads((tmp_path / "t.json").read_text())["srresnet"]
    assert {"ours_s", "reference_s", "ratio", "tflops"} <= row.keys()
    # the same first step from the same weights: the engine and the independently written (fp32) reference agree;
    # to fp32 rounding when ours runs fp32, to bf16's when it runs bf16 autocast (CPUs with AVX512_BF16/AMX)
    rel = 1e-6 if row["ours_precision"] == "fp32" else 1e-3
    assert abs(row["first_loss_ours"] - row["first_loss_reference"]) <= rel * row["first_loss_reference"]
    # FLOPs counted by torch's flop counter vs the design floors (0.12 TFLOP per SRResNet step at batch 16, HR 96)
    assert abs(row["counted_tflop"] - 0.12) / 0.12 < 0.05


def test_upscale_benchmark_runs_ours_beside_the_plain_forward(tmp_path):
    _run("upscale.py", "--models", "srresnet", "--size", "32", "--tiles", "16", "0", "--repeats", "1", "--warmup", "0",
         "--json", str(tmp_path / "u.json"))
    rows = json.loads((tmp_path / "u.json").read_text())
    rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
    configs = [r["config"] for r in rows]
    assert configs[0] == "reference model(x)" and any("tile 16" in c for c in configs)
    assert all(r["seconds"] > 0 and r["ratio"] > 0 for r in rows)
    # the same image from the same weights: ours is the plain forward's output (SRResNet's tanh [-1, 1] mapped to
    # [0, 1] on both sides; bf16 on a bf16 CPU, a 16-pixel pad around 16-pixel tiles), never another picture
    for r in rows[1:]:
        assert r["psnr_vs_fp32"] == "identical" or r["psnr_vs_fp32"] > 40, r


def test_upscale_benchmark_runs_the_spandrel_peer_on_the_same_weights(tmp_path):
    pytest.importorskip("spandrel")
    _run("upscale.py", "--models", "rrdbnet", "--rrdb-size", "24", "--tiles", "12", "0", "--repeats", "1",
         "--warmup", "0", "--json", str(tmp_path / "p.json"))
    rows = {r["config"]: r for r in json.loads((tmp_path / "p.json").read_text())["rows"]}
    whole = next(r for c, r in rows.items() if c.startswith("spandrel") and c.endswith("whole"))
    tiled = rows["spandrel tiles 12 pad 10"]
    # the peer loaded the same checkpoint: its whole-image output is the fp32 reference's (same network, same input)
    assert whole["psnr_vs_fp32"] == "identical" or whole["psnr_vs_fp32"] > 60
    assert tiled["psnr_vs_fp32"] == "identical" or tiled["psnr_vs_fp32"] > 40  # a 10-pixel pad: close, not exact
    (config, ours), = ((c, r["psnr_vs_fp32"]) for c, r in rows.items() if c.startswith("Upscaler tile whole pad 16"))
    if config.endswith("bf16"):  # precision auto chose bf16 (AVX512_BF16/AMX CPU): the accuracy of bf16
        assert ours > 40, (config, ours)
    else:  # fp32 (no native bf16; or "fp32 (small)": the image is no larger than the accuracy guard's probe)
        assert "fp32" in config and (ours == "identical" or ours > 60), (config, ours)  # channels_last: ~1 grey level


def test_runtimes_benchmark_compares_eager_ours_and_onnx_runtime(tmp_path):
    """A tiny RRDBNet through the runtime comparison (torch.compile left out: minutes of compilation on 2 cores):
    eager fp32 is the reference, ours and ONNX Runtime run the same weights, OpenVINO is reported when absent."""
    _run("runtimes.py", "--blocks", "1", "--feat", "8", "--grow", "4", "--tile", "8", "--pad", "4", "--repeats", "1",
         "--no-compile", "--json", str(tmp_path / "r.json"))
    rows = {r["config"]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    ref = next(r for c, r in rows.items() if c.startswith("eager fp32"))
    assert ref["psnr_vs_fp32"] == "identical" and ref["ratio"] == 1.0
    ours = next(r for c, r in rows.items() if c.startswith("ours"))
    assert ours["psnr_vs_fp32"] == "identical" or ours["psnr_vs_fp32"] > 40  # fp32, or bf16 on a bf16 CPU
    onnx = next(r for c, r in rows.items() if c.startswith("ONNX Runtime"))
    assert onnx["psnr_vs_fp32"] == "identical" or onnx["psnr_vs_fp32"] > 60  # the same network in fp32
    assert any(c.startswith("OpenVINO") for c in rows)  # measured, or named as not installed


def test_upscale_benchmark_compares_the_default_tile_rule_with_fixed_tiles(tmp_path):
    _run("upscale.py", "--defaults-vs-fixed", "96", "--fixed", "32", "48", "--tiny", "--json", str(tmp_path / "t.json"))
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["config"] for r in rows] == ["fixed tile 32", "fixed tile 48", "defaults, cold cache",
                                           "defaults, a later run after a probe under load"]
    assert all(r["seconds"] > 0 and r["ratio_vs_best_fixed"] > 0 for r in rows)
    assert rows[0]["tile"] == 32 and rows[2]["why"].startswith(("tuned", "whole")) and "probe_under_load" in rows[3]


def test_gpu_script_smoke_runs_on_cpu(tmp_path):
    """benchmarks/gpu.sh --tiny: every section of the GPU run on CPU with tiny networks, the JSON it commits."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu.sh"), "--tiny"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OUT": str(out), "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["train"]) == {"srresnet", "srgan", "rrdbnet", "esrgan"}
    for row in result["train"].values():
        assert row["off"]["precision"] == "fp32" and row["off"]["memory_format"] == "contiguous"
        assert row["on"]["memory_format"] == "channels_last" and row["ratio_off_over_on"] > 0
    configs = {(r["tile"], r["precision"]) for r in result["inference"]}
    assert {(16, "fp32"), ("whole", "fp32"), (16, "bf16"), ("whole", "bf16")} == configs
    bf16 = [r["psnr_vs_fp32_whole"] for r in result["inference"] if r["precision"] == "bf16"]
    assert all(db is not None and db > 30 for db in bf16)  # bf16 differs from fp32, slightly


def test_guard_probe_benchmark_times_both_windows_on_the_same_images(tmp_path):
    out = _run("guard_probe.py", "--tiny", "--json", str(tmp_path / "g.json"))
    if "no native bf16" in out:
        pytest.skip("this CPU runs fp32 under precision auto: no guard to measure")
    data = json.loads((tmp_path / "g.json").read_text())
    assert [r["image"] for r in data["rows"]] == ["noise"]
    row = data["rows"][0]
    assert set(row) == {"image", "context 16 (96x96 window)", "no context (64x64 window)"}
    for k in ("context 16 (96x96 window)", "no context (64x64 window)"):
        assert row[k]["seconds"] > 0 and 20 < row[k]["psnr"] <= math.inf  # bf16 against fp32: close, not equal
    assert data["ratio"] > 0 and "cheaper" in out
