"""The report's pictures: the papers' zoomed-crop comparison figure (the region SR methods differ most in) and the
perception-distortion plane (ESRGAN Fig. 2), drawn with matplotlib into PNGs written atomically."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srgan_lib.data.resize import modcrop
from srgan_lib.io.images import atomic_path, read_image
from srgan_lib.report.references import display_name


def pick_region(hr: np.ndarray, size: int) -> tuple[int, int, int]:
    """(y, x, size) of the ``size``-square HR window with the most gradient energy: where SR methods differ most."""
    grey = hr.astype(np.float64).mean(axis=2) if hr.ndim == 3 else hr.astype(np.float64)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    size = min(size, *energy.shape)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x), size


@dataclass
class Panel:
    """One crop of a comparison figure: label, pixels and the caption under it."""

    label: str
    crop: np.ndarray
    caption: str


def comparison_panels(hr: np.ndarray, srs: Mapping[str, np.ndarray], region: tuple[int, int, int],
                      metrics: Mapping[str, Mapping[str, float]]) -> list[Panel]:
    """HR crop first, then each method's crop of the same region, captioned 'PSNR dB / NIQE'."""
    y, x, size = region
    panels = [Panel("HR", hr[y:y + size, x:x + size], "PSNR / NIQE")]
    for method, sr in srs.items():
        if sr.shape != hr.shape:
            raise ValueError(f"{method}: SR image is {sr.shape}, HR is {hr.shape}")
        m = metrics[method]
        panels.append(Panel(display_name(method), sr[y:y + size, x:x + size],
                            f"{m['psnr_y']:.2f} dB / {m['niqe']:.2f}"))
    return panels


def save_figure(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    plt.close(fig)
    return path


def comparison_figure(path: Path, title: str, hr: np.ndarray, region: tuple[int, int, int],
                      panels: Sequence[Panel]) -> Path:
    """The papers' figure: the full image with the region marked, and the zoomed crops side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(panels)
    fig = plt.figure(figsize=(2.0 * n, 2.0 * n * hr.shape[0] / hr.shape[1] * 0.5 + 2.6), dpi=100)
    grid = fig.add_gridspec(2, n, height_ratios=[hr.shape[0] / hr.shape[1] * n * 0.5, 1])
    top = fig.add_subplot(grid[0, :])
    top.imshow(hr)
    y, x, size = region
    top.add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor="red", linewidth=1.5))
    top.set_title(title, fontsize=10)
    top.axis("off")
    for i, p in enumerate(panels):
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(p.crop, interpolation="nearest")
        ax.set_title(p.label, fontsize=9)
        ax.set_xlabel(p.caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


# where a point's label may go, in points from the point (the first free one wins): above it, right then left, then
# further above, then below
_LABEL_OFFSETS = ((4, 4), (-4, 4), (4, 12), (-4, 12), (4, -10), (-4, -10), (4, 20), (-4, 20), (4, -18), (-4, -18),
                  (4, 28), (4, -26))


def _place_labels(ax: Any, labels: list[tuple[str, float, float, dict[str, Any]]]) -> None:
    """Annotate each point at the first offset where its text covers no marker and no label placed before it and
    stays inside the axes (close points such as SRResNet and RRDB on Set5 otherwise print over each other)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()  # the axes' final limits and a renderer to measure text with
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = [xy for c in ax.collections for xy in c.get_offsets()] + [
        xy for line in ax.get_lines() for xy in line.get_xydata()]
    pixels = ax.transData.transform(points)
    placed: list[Any] = [Bbox.from_bounds(x - 3, y - 3, 6, 6) for x, y in pixels]

    def room(label: tuple[str, float, float, dict[str, Any]]) -> float:  # distance to the nearest other marker
        x, y = ax.transData.transform((label[1], label[2]))
        return min((math.hypot(px - x, py - y) for px, py in pixels if math.hypot(px - x, py - y) > 0.5),
                   default=math.inf)

    for text, xv, yv, style in sorted(labels, key=room):  # the most crowded point chooses first
        best: tuple[tuple[bool, int, int], tuple[int, int]] | None = None
        for i, (dx, dy) in enumerate(_LABEL_OFFSETS):
            note = ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(dx, dy),
                               ha="left" if dx > 0 else "right", **style)
            box = note.get_window_extent(renderer)
            note.remove()
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            score = (not inside, sum(box.overlaps(b) for b in placed), i)
            if best is None or score < best[0]:
                best = score, (dx, dy)
            if score[:2] == (False, 0):
                break
        assert best is not None
        (dx, dy) = best[1]  # free and inside when any offset is; else the one that covers least
        note = ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(dx, dy),
                           ha="left" if dx > 0 else "right", **style)
        placed.append(note.get_window_extent(renderer))


def perception_distortion_figure(path: Path, means: pd.DataFrame) -> tuple[Path, str]:
    """RMSE-Y against PI (NIQE where PI is unavailable) per set; the interpolation sweep drawn as a curve from the PSNR
    model (alpha 0) to the GAN model (alpha 1). Returns the path and the perceptual axis used ('pi' or 'niqe')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(s for s, _ in means.columns))
    axis = "pi" if all(not pd.isna(means[(s, "pi")]).any() for s in sets) else "niqe"
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.5), dpi=100, squeeze=False)
    interp = sorted(m for m in means.index if str(m).startswith("interp_"))
    pending: list[tuple[Any, list[tuple[str, float, float, dict[str, Any]]]]] = []
    for ax, s in zip(axes[0], sets, strict=True):
        labels: list[tuple[str, float, float, dict[str, Any]]] = []
        for method in means.index:
            if str(method).startswith("interp_"):
                continue
            xv, yv = means.loc[method, (s, "rmse_y")], means.loc[method, (s, axis)]
            ax.scatter([xv], [yv], s=30, zorder=3)
            labels.append((display_name(str(method)), xv, yv, {"fontsize": 8}))
        if interp:
            xs = [means.loc[m, (s, "rmse_y")] for m in interp]
            ys = [means.loc[m, (s, axis)] for m in interp]
            ax.plot(xs, ys, "-o", color="tab:blue", alpha=0.6, markersize=4, label="network interpolation", zorder=2)
            for m, xv, yv in ((interp[0], xs[0], ys[0]), (interp[-1], xs[-1], ys[-1])):
                alpha = f"α={str(m).removeprefix('interp_')}"
                same = [i for i, (_, lx, ly, _) in enumerate(labels) if math.isclose(lx, xv) and math.isclose(ly, yv)]
                if same:  # alpha 0 / 1 is bit-identical to the PSNR / GAN model: one point, one label
                    text, lx, ly, style = labels[same[0]]
                    labels[same[0]] = (f"{text} ({alpha})", lx, ly, style)
                else:
                    labels.append((alpha, xv, yv, {"fontsize": 7, "color": "tab:blue"}))
            ax.legend(fontsize=8, loc="best")
        pending.append((ax, labels))
        ax.set_xlabel("RMSE (Y, 0-255)  ← less distortion")
        ax.set_ylabel(f"{'perceptual index' if axis == 'pi' else 'NIQE'}  ← better perceptual quality")
        ax.set_title(f"{s}: perception-distortion plane", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    for ax, labels in pending:  # after the layout: the labels are measured where they will be drawn
        _place_labels(ax, labels)
    return save_figure(fig, path), axis


def _sr_image(sr_dir: Path, method: str, set_name: str, image: str) -> np.ndarray | None:
    path = sr_dir / method / set_name / f"{image}.png"
    return read_image(path) if path.is_file() else None


def comparison_figures(evals: Mapping[str, Mapping[str, dict]], sr_dir: Path, figs: Path, methods: Sequence[str],
                       crop: int) -> list[tuple[Path, str]]:
    """One comparison figure per test image that has SR images: the full HR with the zoomed region, each method's
    crop, and for a set with its own LR (a real-world set: ``lr_files`` in its results) the degraded LR's crop
    (enlarged, nearest) first and the HR's last. Returns (its path, its Markdown section) per figure."""
    out = []
    for set_name, result in next(iter(evals.values())).items():
        scale, own = result["scale"], result.get("lr_files")
        for image, hr_path in result.get("files", {}).items():
            srs = {m: sr for m in methods if m in evals
                   and (sr := _sr_image(sr_dir, m, set_name, image)) is not None}
            if not srs:
                continue
            hr = modcrop(read_image(hr_path), scale)
            region = pick_region(hr, min(crop, *hr.shape[:2]))
            panels = comparison_panels(hr, srs, region, {m: evals[m][set_name]["images"][image] for m in srs})
            title = f"{set_name}/{image} (x{scale})"
            if own:
                y, x, size = region
                lr = read_image(own[image]).repeat(scale, 0).repeat(scale, 1)
                panels = [Panel("degraded LR", lr[y:y + size, x:x + size], f"x{scale}, nearest"), *panels[1:],
                          panels[0]]
                title = f"{set_name}/{image} (x{scale}, real-world LR)"
            path = comparison_figure(figs / f"{set_name}_{image}.png", title, hr, region, panels)
            out.append((path, f"### {set_name}/{image}\n\n![{set_name}/{image}](figures/{path.name})\n"))
    return out
