"""The installed `srgan` command: evaluation reproducing the papers' bicubic row, NIQE, errors, help."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from srgan_lib.io.images import read_image, write_png
from srgan_lib.report.references import BICUBIC_TOLERANCE, PAPER_ROWS
from tests.conftest import BENCHMARKS, basicsr_baboon, run_cli

SETS = ("--set", f"Set5={BENCHMARKS / 'Set5'}", "--set", f"Set14={BENCHMARKS / 'Set14'}")


@pytest.fixture(scope="module")
def bicubic_generated() -> dict:
    return json.loads(run_cli("evaluate", "--model", "bicubic", *SETS, "--lr-source", "generate", "--json", "-").stdout)


def test_bicubic_reproduces_the_paper_row(bicubic_generated):
    for name, (tol_psnr, tol_ssim) in BICUBIC_TOLERANCE.items():
        paper_psnr, paper_ssim = PAPER_ROWS["bicubic"]["sets"][name]
        ours = bicubic_generated[name]
        print(f"{name}: ours {ours['psnr_y']:.3f} / {ours['ssim_y']:.4f}  paper {paper_psnr} / {paper_ssim}")
        assert ours["psnr_y"] == pytest.approx(paper_psnr, abs=tol_psnr)
        assert ours["ssim_y"] == pytest.approx(paper_ssim, abs=tol_ssim)
    assert bicubic_generated["Set5"]["n_images"] == 5
    assert bicubic_generated["Set14"]["n_images"] == 14


def test_evaluate_json_layout(bicubic_generated):
    set5 = bicubic_generated["Set5"]
    assert {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe", "n_images", "images"} <= set(set5)
    assert set(set5["images"]) == {"baby", "bird", "butterfly", "head", "woman"}
    per_image = [v["psnr_y"] for v in set5["images"].values()]
    assert set5["psnr_y"] == pytest.approx(sum(per_image) / 5)
    assert set5["psnr_rgb"] < set5["psnr_y"]  # RGB PSNR is the lower number: never mix the two
    assert 5 < set5["niqe"] < 12


def test_folder_lr_equals_generated_lr(bicubic_generated):
    """Our MATLAB bicubic reproduces the distributed LR files, so both LR sources give identical metrics."""
    folder = json.loads(run_cli("evaluate", "--model", "bicubic", *SETS, "--lr-source", "folder", "--json", "-").stdout)
    for name in ("Set5", "Set14"):
        assert folder[name]["psnr_y"] == bicubic_generated[name]["psnr_y"]
        assert folder[name]["ssim_y"] == bicubic_generated[name]["ssim_y"]


def test_table_prints_paper_values_beside_ours():
    out = run_cli("evaluate", "--model", "bicubic", "--set", f"Set5={BENCHMARKS / 'Set5'}").stdout
    assert "28.42 / 0.8104" in out and "28.43" in out
    assert "evaluate: bicubic on 1 set(s), 5 images" in out


def test_nearest_is_worse_than_bicubic(bicubic_generated):
    near = json.loads(run_cli("evaluate", "--model", "nearest", *SETS, "--json", "-").stdout)
    assert near["Set5"]["psnr_y"] < bicubic_generated["Set5"]["psnr_y"] - 1


def test_metrics_niqe_prints_one_value_per_image(tmp_path):
    baboon = tmp_path / "baboon_basicsr.png"
    write_png(baboon, basicsr_baboon())
    out = run_cli("metrics", "niqe", str(baboon), str(BENCHMARKS / "Set14" / "HR" / "zebra.png")).stdout.splitlines()
    assert len(out) == 2
    assert float(out[0].split()[0]) == pytest.approx(5.72957338, abs=1e-3)


def test_metrics_compare_agrees_with_scikit_image(tmp_path):
    """A noisy copy of an HR image against it: PSNR/SSIM on RGB with the x4 shave equal scikit-image's."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr_path = BENCHMARKS / "Set5" / "HR" / "baby.png"
    hr = read_image(hr_path)
    noise = np.random.default_rng(0).normal(0, 8, hr.shape)
    sr = np.clip(hr.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)
    write_png(tmp_path / "sr.png", sr)
    out = json.loads(run_cli("metrics", "compare", str(tmp_path / "sr.png"), str(hr_path), "--json", "-").stdout)
    a, b = sr[4:-4, 4:-4], hr[4:-4, 4:-4]
    assert out["psnr_rgb"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-3)
    ssim_rgb = structural_similarity(b, a, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert out["ssim_rgb"] == pytest.approx(ssim_rgb, abs=2e-3)
    assert 20 < out["psnr_y"] < 40 and out["psnr_y"] > out["psnr_rgb"]  # the luma averages the channels' noise


def test_errors_are_one_clear_line(tmp_path):
    proc = run_cli("evaluate", "--model", "bicubic", "--set", f"X={tmp_path / 'nowhere'}", check=False)
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("evaluate", "--model", "lanczos", "--set", f"Set5={BENCHMARKS / 'Set5'}", check=False)
    assert proc.returncode == 2 and "unknown model 'lanczos'" in proc.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    proc = run_cli("metrics", "niqe", str(bad), check=False)
    assert proc.returncode == 1 and "bad.png" in proc.stderr


def test_help_answers_the_question():
    out = run_cli("--help").stdout
    for command in ("data", "evaluate", "metrics", "params"):
        assert command in out
    assert "bit-exact" in run_cli("data", "degrade", "--help").stdout


def _subparsers(parser):  # type: ignore[no-untyped-def]
    """Every leaf sub-parser of the ``srgan`` parser, by its command words."""
    import argparse

    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                leaves = _subparsers(sub)
                out.update({(name, *k): v for k, v in leaves.items()} if leaves else {(name,): sub})
    return out


def test_no_command_help_shows_an_unset_default():
    """Every command's --help, built in-process: no flag reads a settings field without a default (it printed
    'default PydanticUndefined' for `srgan data lists --min-size`), and no help promises a default of None."""
    from srgan_lib import cli

    parsers = _subparsers(cli.build_parser(True))
    assert set(parsers) == set(cli.COMMANDS)
    for words, sub in parsers.items():
        text = sub.format_help()
        assert "PydanticUndefined" not in text and "(default None)" not in text, (words, text)


def test_data_lists_runs_with_only_its_required_arguments(tmp_path):
    """The issue's command as a new user types it (it crashed with a TypeError comparing an int to
    PydanticUndefined): --min-size defaults to the settings' 128, so exactly the T91 images whose short side is
    below 128 (read here with PIL) are rejected as too small, and the rest kept."""
    from PIL import Image

    from srgan_lib import cli

    out = tmp_path / "lists"
    rc = cli.main(["data", "lists", "--train", "data/train/T91", "--test", f"Set5={BENCHMARKS / 'Set5'}",
                   "--out", str(out)])
    assert rc == 0
    small = set()
    for f in sorted(Path("data/train/T91").glob("*.png")):
        with Image.open(f) as im:
            if min(im.size) < 128:
                small.add(f.as_posix())
    rejects = json.loads((out / "rejects.json").read_text())["train"]
    assert {r["path"] for r in rejects if r["reason"] == "too_small"} == small and small
    kept = {i["path"] for i in json.loads((out / "train.json").read_text())["images"]}
    assert len(kept) == 91 - len(small) and json.loads((out / "Set5.json").read_text())["images"]


def test_a_missing_metric_model_is_said_once(tmp_path):
    """Ma's model and LPIPS's weights missing: each reason appears once in what the command prints (the table's
    footnote), not as two WARNING lines before it (a newcomer's `make run` showed them 18 times)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "srgan_lib.commands.evaluate", "--model", "bicubic",
                          "--set", f"Set5={BENCHMARKS / 'Set5'}", "--ma-model", str(tmp_path / "model.mat"),
                          "--lpips-net", "alex", "--lpips-weights", str(tmp_path / "alex.pth")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    said = res.stdout + res.stderr
    assert said.count(str(tmp_path / "model.mat")) == 1 and said.count(str(tmp_path / "alex.pth")) == 1, said
    assert "Ma, PI n/a: Ma model file not found" in said and "WARNING" not in said


def test_stage_commands_read_their_params_section(tmp_path):
    """dvc.yaml passes `--params params.yaml` to evaluate / register / report instead of a flag per key: every flag
    left at its default takes the file's value; a flag given with another value wins."""
    import argparse

    import yaml

    from srgan_lib.commands import evaluate, register, report
    from srgan_lib.commands._params import fill_from_params

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["evaluate"].update(kernel="pil", lpips={**raw["evaluate"]["lpips"], "net": "alex"})
    raw["register"].update(set="Set5", psnr_floor=0.5)
    raw["report"]["crop"] = 64
    raw["tracking"]["uri"] = "none"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def parsed(module, *argv):  # type: ignore[no-untyped-def]
        p = argparse.ArgumentParser()
        module.add_arguments(p)
        return p.parse_args(["--params", str(tmp_path / "p.yaml"), *argv])

    args = parsed(evaluate, "--model", "bicubic", "--lpips-net", "vgg")
    fill_from_params(args, evaluate.add_arguments, evaluate._from_params)
    assert (args.kernel, args.lpips_net, args.tracking_uri, args.ma_model) == ("pil", "vgg", "none",
                                                                               raw["evaluate"]["ma"]["model"])
    args = parsed(register, "--model", "m.pth", "--name", "n", "--metrics", "m.json")
    fill_from_params(args, register.add_arguments, register._from_params)
    assert (args.test_set, args.psnr_floor, args.min_gain) == ("Set5", 0.5, raw["register"]["min_gain"])
    args = parsed(report, "--eval", "e", "-o", "o")
    fill_from_params(args, report.add_arguments, report._from_params)
    assert args.crop == 64 and args.tracking_uri == "none"


def test_every_command_runs_with_its_required_arguments_only(tmp_path):
    """Each command as a new user first types it (its required arguments, committed data, the rest defaults), in
    process. Not here: train / repro / sweep (whole trainings, run end to end in tests/e2e) and register (it needs an
    MLflow server: tests/registry)."""
    import torch
    from PIL import Image

    from srgan_lib.models import build_model

    t = tmp_path
    set5 = BENCHMARKS / "Set5"
    gen = t / "g.pth"
    torch.save({"params": build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4).state_dict()}, gen)
    lr = set5 / "LR_bicubic" / "X4" / "baby.png"
    hr = set5 / "HR" / "baby.png"
    with Image.open(lr) as im:
        im.resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC).save(t / "sr.png")
    calls = [
        ("data", "embedded", "--out", str(t / "raw")),
        ("data", "lists", "--train", str(t / "raw"), "--test", f"Set5={set5}", "--out", str(t / "lists")),
        ("data", "degrade", "--list", str(t / "lists" / "train.json"), "--out", str(t / "lr")),
        ("data", "store", "--list", str(t / "lists" / "train.json"), "--lr-dir", str(t / "lr"), "--out",
         str(t / "store")),
        ("data", "realworld", "--set", f"lists.out={t / 'lists'}", f"realworld.out={t / 'rw'}",
         "realworld.sets=[Set5]"),
        ("data", "preview", "--images", str(set5 / "HR"), "--out", str(t / "preview.png"), "--set",
         "tracking.uri=none"),  # (without --images: the training store, which a fresh clone has not built)
        ("metrics", "niqe", str(hr)),
        ("metrics", "compare", str(t / "sr.png"), str(hr)),
        ("models", "summary", "srresnet"),
        ("interpolate", "--psnr", str(gen), "--gan", str(gen), "--alpha", "0.5", "-o", str(t / "interp")),
        ("upscale", str(lr), "-o", str(t / "up"), "--model", str(gen)),
        ("export", "--model", str(gen), "-o", str(t / "g.onnx")),
        ("evaluate", "--model", "bicubic", "--set", f"Set5={set5}", "--json", str(t / "eval" / "bicubic.json")),
        ("report", "--eval", str(t / "eval"), "-o", str(t / "report")),
        ("params", "check"),
        ("params", "show"),
    ]
    from srgan_lib import cli

    assert {c[:2] if c[0] in cli.GROUPS else c[:1] for c in calls} | {("train",), ("repro",), ("sweep",),
                                                                         ("register",)} == set(cli.COMMANDS)
    for args in calls:
        res = run_cli(*args, check=False)
        assert res.returncode == 0, (args, res.stdout[-1500:], res.stderr[-1500:])
    assert (t / "store").is_dir() and list((t / "up").glob("*.png")) and (t / "g.onnx").is_file()
    assert len(list((t / "rw" / "Set5-RW" / "LR" / "X4").glob("*.png"))) == 5 and (t / "preview.png").is_file()
    assert (t / "report" / "report.md").is_file() and list((t / "interp").glob("*.pth"))
