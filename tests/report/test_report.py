"""The evaluation report: paper-layout table against the published bicubic row, per-image CSV, comparison figures
(sizes, and that every crop comes from its own image at the marked region), the perception-distortion plane with the
interpolation sweep, and the report logged to a real SQLite-backed MLflow store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from srgan_lib.data.resize import modcrop
from srgan_lib.io.images import read_image
from srgan_lib.models import build_model
from srgan_lib.report.figures import comparison_panels, pick_region
from tests.conftest import BENCHMARKS, run_cli

SET5 = BENCHMARKS / "Set5"  # committed


def test_pick_region_finds_the_texture():
    img = np.full((200, 300, 3), 128, np.uint8)
    img[120:160, 40:80] = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    y, x, size = pick_region(img, 40)
    assert size == 40 and abs(y - 120) <= 1 and abs(x - 40) <= 1


def test_report_end_to_end(tmp_path):
    ev, sr = tmp_path / "eval", tmp_path / "sr"
    for baseline in ("bicubic", "nearest"):
        run_cli("evaluate", "--model", baseline, "--set", f"Set5={SET5}", "--json", str(ev / f"{baseline}.json"),
                "--sr-dir", str(sr))
    torch.manual_seed(0)
    (tmp_path / "interp").mkdir()
    for alpha in ("0.00", "0.50", "1.00"):  # a stand-in sweep: three tiny RRDBNets
        net = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4)
        torch.save({"params": net.state_dict()}, tmp_path / "interp" / f"interp_{alpha}.pth")
    run_cli("evaluate", "--model", str(tmp_path / "interp"), "--set", f"Set5={SET5}", "--json",
            str(tmp_path / "interp_eval"), "--metrics-json", str(tmp_path / "interp.json"))
    assert sorted(p.name for p in (tmp_path / "interp_eval").iterdir()) == [
        "interp_0.00.json", "interp_0.50.json", "interp_1.00.json"]

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    out = run_cli("report", "--eval", str(ev), str(tmp_path / "interp_eval"), "--sr-dir", str(sr), "--methods",
                  "bicubic", "nearest", "-o", str(tmp_path / "report"), "--tracking-uri", uri)
    rep = tmp_path / "report"
    assert f"report: {rep / 'report.md'}" in out.stdout

    md = (rep / "report.md").read_text()
    table = (rep / "table.md").read_text()
    assert "| Bicubic (ours)" in table and "| Bicubic (paper)" in table and "28.42" in table and "0.8104" in table
    ours = next(line for line in table.splitlines() if line.startswith("| Bicubic (ours)"))
    assert abs(float(ours.split("|")[2]) - 28.42) <= 0.05  # the papers' bicubic row, reproduced through this stage
    assert "n/a" in ours and "Ma, PI" in md  # no Ma model: recorded, not estimated
    assert "Network interpolation sweep" in md and "perception_distortion.png" in md

    csv = pd.read_csv(rep / "per_image.csv")
    assert len(csv) == 5 * 5 and set(csv["method"]) == {"bicubic", "nearest", "interp_0.00", "interp_0.50",
                                                        "interp_1.00"}
    baby = csv[(csv.method == "bicubic") & (csv.image == "baby")].iloc[0]
    assert 20 < baby.psnr_y < 40  # the CSV keeps 6 significant digits
    assert baby.rmse_y == pytest.approx(255 / 10 ** (baby.psnr_y / 20), rel=1e-5)

    figures = sorted((rep / "figures").iterdir())
    assert [f.stem for f in figures] == [f"Set5_{n}" for n in ("baby", "bird", "butterfly", "head", "woman")]
    for f in [*figures, rep / "perception_distortion.png"]:
        with Image.open(f) as im:
            assert im.format == "PNG" and im.width >= 500 and im.height >= 300

    # the crops are the marked region of each method's own SR image (and of HR)
    hr = modcrop(read_image(SET5 / "HR" / "bird.png"), 4)
    srs = {m: read_image(sr / m / "Set5" / "bird.png") for m in ("bicubic", "nearest")}
    region = pick_region(hr, 96)
    metrics = {m: {"psnr_y": 1.0, "niqe": 2.0} for m in srs}
    panels = comparison_panels(hr, srs, region, metrics)
    y, x, s = region
    assert [p.label for p in panels] == ["HR", "Bicubic", "Nearest"]
    np.testing.assert_array_equal(panels[0].crop, hr[y:y + s, x:x + s])
    for p, m in zip(panels[1:], srs, strict=True):
        np.testing.assert_array_equal(p.crop, srs[m][y:y + s, x:x + s])
        assert not np.array_equal(p.crop, panels[0].crop)
    with pytest.raises(ValueError, match="SR image is"):
        comparison_panels(hr, {"bicubic": srs["bicubic"][:-4]}, region, metrics)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = next(r for r in client.search_runs([client.get_experiment_by_name("srgan").experiment_id])
               if r.info.run_name == "report")
    names = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/per_image.csv", "report/perception_distortion.png", "report/figures"} <= names
    figs = {f.path for f in client.list_artifacts(run.info.run_id, "report/figures")}
    assert "report/figures/Set5_baby.png" in figs and run.data.tags["report.perceptual_axis"] == "niqe"


def test_report_without_results_is_a_clear_error(tmp_path):
    out = run_cli("report", "--eval", str(tmp_path), "-o", str(tmp_path / "r"), check=False)
    assert out.returncode == 2 and "no evaluation results" in out.stderr


def test_perception_distortion_labels_never_overlap_each_other_or_a_marker(tmp_path, monkeypatch):
    # Set5 of the embedded default: SRResNet, RRDB and the sweep's alpha 0 lie within 0.5 RMSE of each other
    import matplotlib.figure

    from srgan_lib.report import figures as report

    rows = {"srresnet": (8.80, 9.42), "rrdbnet": (9.25, 9.41), "srgan": (9.22, 7.31), "esrgan": (10.47, 7.27),
            "bicubic": (10.68, 8.45), "nearest": (13.68, 13.9), "interp_0.00": (9.25, 9.41),
            "interp_0.20": (9.21, 9.36), "interp_0.40": (9.26, 9.05), "interp_1.00": (10.47, 7.27)}
    means = pd.DataFrame({("Set5", "rmse_y"): {k: v[0] for k, v in rows.items()},
                          ("Set5", "niqe"): {k: v[1] for k, v in rows.items()},
                          ("Set5", "pi"): {k: float("nan") for k in rows}})
    figures: list[matplotlib.figure.Figure] = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig) or path)
    assert report.perception_distortion_figure(tmp_path / "pd.png", means)[1] == "niqe"  # PI unavailable
    ax = figures[0].axes[0]
    renderer = figures[0].canvas.get_renderer()
    notes = [t for t in ax.texts]
    boxes = [t.get_window_extent(renderer) for t in notes]
    # alpha 0 and 1 coincide with RRDB and ESRGAN (bit-identical networks): one label each
    assert sorted(t.get_text() for t in notes) == ["Bicubic", "ESRGAN (α=1.00)", "Nearest", "RRDB (α=0.00)", "SRGAN",
                                                   "SRResNet"]
    assert not [(notes[i].get_text(), notes[j].get_text()) for i in range(len(boxes)) for j in range(i)
                if boxes[i].overlaps(boxes[j])]
    markers = ax.transData.transform([v for v in rows.values()])
    assert not [t.get_text() for t, b in zip(notes, boxes, strict=True)
                if any(b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1 for x, y in markers)]
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
