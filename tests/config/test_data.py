"""Data stages: the embedded default set, data lists with rejects, incremental LR generation, params validation."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from srgan_lib.config.paramfile import ParamsError, apply_overrides, read_params
from srgan_lib.config.params import load_params, validate
from srgan_lib.data.degrade import degrade, sources_from_folder, sources_from_list
from srgan_lib.data.embedded import EMBEDDED_IMAGES, write_embedded
from srgan_lib.data.lists import build_lists, pixel_md5
from srgan_lib.data.resize import downsample
from srgan_lib.io.images import read_image
from tests.conftest import BENCHMARKS, REPO


def _img(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_embedded_images_equal_scikit_image_pixels(tmp_path):
    import skimage.data

    paths = write_embedded(tmp_path, ["astronaut", "motorcycle_right"])
    np.testing.assert_array_equal(read_image(paths[0]), skimage.data.astronaut())
    np.testing.assert_array_equal(read_image(paths[1]), skimage.data.stereo_motorcycle()[1])
    assert len(EMBEDDED_IMAGES) >= 9
    with pytest.raises(ValueError, match="unknown embedded image"):
        write_embedded(tmp_path, ["lily"])


def test_lists_keep_reject_and_are_deterministic(tmp_path):
    train = tmp_path / "train"
    a = _img(train / "a.png", 160, 200, 0)
    _img(train / "sub" / "b.png", 300, 130, 1)
    _img(train / "small.png", 60, 300, 2)
    shutil.copy(train / "a.png", train / "dup.png")
    (train / "broken.png").write_bytes((train / "a.png").read_bytes()[:500])
    leak = read_image(BENCHMARKS / "Set5" / "HR" / "bird.png")
    Image.fromarray(leak).save(train / "bird_copy.png")

    out = tmp_path / "lists"
    test = {"Set5": BENCHMARKS / "Set5"}
    results = build_lists([train], test, out, min_size=128)
    kept = [e.name for e in results["train"].images]
    assert kept == ["a", "b"]
    reasons = {os.path.basename(r.path): r.reason for r in results["train"].rejected}
    assert reasons == {
        "bird_copy.png": "test_leakage",
        "broken.png": "undecodable",
        "dup.png": "duplicate",
        "small.png": "too_small",
    }
    listed = json.loads((out / "train.json").read_text())
    assert listed["images"][0]["md5"] == pixel_md5(a)
    assert (listed["images"][0]["width"], listed["images"][0]["height"]) == (200, 160)
    set5 = json.loads((out / "Set5.json").read_text())
    assert [e["name"] for e in set5["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    # the md5 values of the shared benchmark README
    assert set5["images"][0]["md5"] == "72f8b0b8f11d77b60ef56cd5a134b83e"
    assert json.loads((out / "index.json").read_text())["test"] == ["Set5"]
    rejects = json.loads((out / "rejects.json").read_text())
    assert len(rejects["train"]) == 4 and rejects["Set5"] == []

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    build_lists([train], test, out, min_size=128)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_lists_fail_clearly_on_empty_split(tmp_path):
    _img(tmp_path / "t" / "tiny.png", 20, 20, 0)
    with pytest.raises(ValueError, match="split 'train' has no usable image"):
        build_lists([tmp_path / "t"], {}, tmp_path / "out", min_size=128)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_lists([tmp_path / "missing"], {}, tmp_path / "out", min_size=128)


def test_degrade_is_correct_and_incremental(tmp_path):
    hr = tmp_path / "hr"
    a = _img(hr / "a.png", 101, 66, 0)  # not a multiple of 4: modcropped to 100x64
    _img(hr / "d" / "b.jpg", 64, 64, 1)
    out = tmp_path / "lr"
    s = degrade(sources_from_folder(hr), out, scale=4)
    assert (s.written, s.up_to_date) == (2, 0)
    np.testing.assert_array_equal(read_image(out / "a.png"), downsample(a, 4))
    assert read_image(out / "a.png").shape == (25, 16, 3)
    assert (out / "d" / "b.png").exists()

    s = degrade(sources_from_folder(hr), out, scale=4)
    assert (s.written, s.up_to_date) == (0, 2)

    a2 = _img(hr / "a.png", 40, 40, 5)  # changed content (and size)
    (out / "user_notes.txt").write_text("not ours")
    (hr / "d" / "b.jpg").unlink()
    s = degrade(sources_from_folder(hr), out, scale=4)
    assert (s.written, s.up_to_date, s.removed) == (1, 0, 1)
    np.testing.assert_array_equal(read_image(out / "a.png"), downsample(a2, 4))
    assert not (out / "d" / "b.png").exists()
    assert (out / "user_notes.txt").exists()  # never touches files it did not make

    s = degrade(sources_from_folder(hr), out, scale=4, kernel="pil")  # settings changed: recompute
    assert s.written == 1


def test_degrade_from_list_uses_paths_relative_to_roots(tmp_path):
    _img(tmp_path / "A" / "x.png", 140, 140, 0)
    _img(tmp_path / "B" / "y.png", 140, 140, 1)
    build_lists([tmp_path / "A", tmp_path / "B"], {}, tmp_path / "lists", min_size=128)
    sources = sources_from_list(tmp_path / "lists" / "train.json")
    assert [rel for _, rel in sources] == ["x.png", "y.png"]


def _params(tmp_path, mutate):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    (tmp_path / "data").symlink_to(REPO / "data")
    return path


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.scale == 4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["lists"].update(min_sise=3), r"unknown key\(s\) 'lists.min_sise'.*allowed: train, test"),
        (lambda p: p["lists"].pop("out"), r"missing key\(s\) 'lists.out'"),
        (lambda p: p["lists"].update(min_size="big"), "'lists.min_size' must be an integer"),
        (lambda p: p["lists"].update(min_size=0), "'lists.min_size' must be an integer >= 1"),
        (lambda p: p.update(scale=5), "'scale' must be one of 2, 3, 4, 8"),
        (lambda p: p["degrade"].update(kernel="lanczos"), "'degrade.kernel' must be one of matlab, pil"),
        (lambda p: p["lists"].update(test=["Set5"]), r"'lists.test\[0\]' must be NAME=PATH"),
        (lambda p: p["lists"].update(test=["X=data/nowhere"]), "test set folder 'data/nowhere' does not exist"),
        (lambda p: p["lists"].update(train=["data/nowhere"]), "training folder 'data/nowhere' does not exist"),
        (lambda p: p["evaluate"].update(baselines=["lanczos"]), r"'evaluate.baselines\[0\]' must be one of"),
        (lambda p: p["evaluate"].update(models=["srresnet"]), r"'register.models\[1\]': 'srgan' is not evaluated"),
        (lambda p: p["register"].update(baseline="nearest") or p["evaluate"].update(baselines=["bicubic"]),
         r"'register.baseline': 'nearest' is not in evaluate.baselines"),
        (lambda p: p["evaluate"]["lpips"].update(net="squeeze"), r"'evaluate.lpips.net' must be one of alex, vgg"),
    ],
)
def test_bad_params_are_named(tmp_path, mutate, message):
    with pytest.raises(ParamsError, match=message) as exc:
        load_params(_params(tmp_path, mutate))
    assert "params.yaml" in str(exc.value)


def test_a_key_given_twice_is_an_error(tmp_path):
    # plain YAML keeps the last value silently: 'scale: 4' then 'scale: 2' would train x2
    text = (REPO / "params.yaml").read_text(encoding="utf-8").replace("scale: 4 ", "scale: 4\nscale: 2 ", 1)
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match=r"params\.yaml: not valid YAML.*key 'scale' is given twice.*lines 5 and 6"):
        load_params(tmp_path / "params.yaml")
    nested = (REPO / "params.yaml").read_text(encoding="utf-8").replace("  seed: 0\n", "  seed: 0\n  seed: 1\n", 1)
    (tmp_path / "params.yaml").write_text(nested, encoding="utf-8")
    with pytest.raises(ParamsError, match="key 'seed' is given twice"):
        load_params(tmp_path / "params.yaml")


def test_paper_overlay_resolves_to_the_papers_settings():
    """configs/paper.yaml is an overlay of params.yaml; what it resolves to is checked against the numbers the papers
    state (SRGAN: Ledig et al. 2017, section 3.2 and 3.4; ESRGAN: Wang et al. 2018, section 4.1), so a change to the
    embedded profile that leaks into the papers' recipe fails here."""
    raw = read_params(REPO / "configs" / "paper.yaml")
    assert "extends" not in raw
    p = validate(apply_overrides(raw, [f"lists.train=[{BENCHMARKS / 'Set5'}]"]), base=REPO)
    sr, gan, rr, es = p.srresnet, p.srgan, p.rrdbnet, p.esrgan
    for stage in (sr, gan):  # 16 residual blocks of 64 features, batch 16 of 96x96 HR crops, Adam beta1 0.9
        assert stage.generator_options == {"num_block": 16, "num_feat": 64, "zero_init_residual": False}
        assert (stage.batch_size, stage.hr_size, stage.betas[0], stage.lr) == (16, 96, 0.9, 1e-4)
    assert sr.iterations == 10**6 and sr.pixel.type == "mse" and sr.perceptual.type == "none"
    # SRGAN: 1e5 updates at 1e-4 then 1e5 at 1e-5; VGG54 MSE rescaled by 1/12.75; adversarial weight 1e-3; no MSE
    assert (gan.iterations, gan.milestones, gan.gamma) == (2 * 10**5, [10**5], 0.1)
    assert gan.perceptual.layer == "relu5_4" and gan.perceptual.feature_scale == pytest.approx(1 / 12.75)
    assert gan.gan.model_dump() == {"type": "vanilla", "weight": 1e-3, "usm": False} and gan.pixel.type == "none"
    for stage in (rr, es):  # 23 RRDB, 64 features, growth 32; batch 16 of 128x128 HR crops
        assert stage.generator_options == {"num_block": 23, "num_feat": 64, "num_grow_ch": 32}
        assert (stage.batch_size, stage.hr_size, tuple(stage.betas)) == (16, 128, (0.9, 0.999))
    # PSNR model: L1, 2e-4 halved every 2e5 updates
    assert (rr.lr, rr.gamma, rr.milestones, rr.pixel.type) == (2e-4, 0.5, [2 * 10**5 * k for k in
                                                                                          (1, 2, 3, 4)], "l1")
    # ESRGAN: 1e-4 halved at 50k, 100k, 200k, 300k; L_G = L_percep(conv5_4, before ReLU) + 5e-3 L_RaGAN + 1e-2 L1
    assert (es.lr, es.gamma, es.milestones) == (1e-4, 0.5, [50_000, 100_000, 200_000, 300_000])
    assert es.perceptual.layer == "conv5_4" and es.perceptual.weight == 1.0
    assert es.gan.model_dump() == {"type": "ragan", "weight": 5e-3, "usm": False}
    assert es.pixel.model_dump() == {"type": "l1", "weight": 1e-2, "usm": False}
    assert p.train.vgg_weights == "imagenet" and es.init_from == "models/rrdbnet.pth"


def test_overlay_merges_mappings_and_names_bad_chains(tmp_path, capsys, monkeypatch):
    from srgan_lib import cli

    (tmp_path / "data").symlink_to(REPO / "data")
    base = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", base)
    over = tmp_path / "o" / "fast.yaml"
    over.parent.mkdir()
    over.write_text("extends: ../params.yaml\nesrgan:\n  gan: {weight: 1.0e-2}\n  milestones: [7]\n")
    raw = read_params(over)
    full = yaml.safe_load(base.read_text())
    assert raw["esrgan"]["gan"] == {**full["esrgan"]["gan"], "weight": 1e-2}  # merged key by key
    assert raw["esrgan"]["milestones"] == [7] and raw["rrdbnet"] == full["rrdbnet"]  # a list replaces
    monkeypatch.chdir(tmp_path)
    assert cli.main(["params", "show", str(over), "-o", str(base)]) == 0  # the base is read before it is replaced
    assert "resolved ->" in capsys.readouterr().out
    assert load_params(base).esrgan.gan.weight == 1e-2 and "extends" not in base.read_text()
    over.write_text("extends: ../params.yaml\nesrgan:\n  gan: {wieght: 1.0e-2}\n")
    with pytest.raises(ParamsError, match=r"fast\.yaml: .*'esrgan\.gan\.wieght'"):  # a typo in an overlay is named
        load_params(over)
    over.write_text("extends: ../nowhere.yaml\n")
    with pytest.raises(ParamsError, match=r"nowhere\.yaml: file not found \('extends' of .*fast\.yaml\)"):
        load_params(over)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ParamsError, match="'extends' loops back"):
        load_params(tmp_path / "a.yaml")
