"""A sweep's results as a picture: every combination on the perception-distortion plane (RMSE-Y against PI, NIQE
where PI is unavailable; Blau & Michaeli 2018, PIRM 2018), the Pareto front marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both lower-is-better), by increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], float("inf")
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def pd_plane(path: Path, labels: Sequence[str], rmse: Sequence[float], perceptual: Sequence[float], *,
             axis: str, title: str, keys: Sequence[str]) -> Path:
    """The figure: one point per combination, labelled with its values (of ``keys``, named in the legend), the
    front as a line through the combinations on it (their labels bold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srgan_lib.report.figures import save_figure

    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    points = list(zip(rmse, perceptual, strict=True))
    front = pareto_front(points)
    ax.scatter(rmse, perceptual, s=36, zorder=3, color="tab:blue", label="combination")
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="tab:red", zorder=2,
            label="Pareto front")
    ax.plot([], [], " ", label="labels: " + ", ".join(keys))
    for i, (text, x, y) in enumerate(zip(labels, rmse, perceptual, strict=True)):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -11), fontsize=7,
                    fontweight="bold" if i in front else "normal")
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel("RMSE (Y, 0-255)  ← less distortion")
    ax.set_ylabel(f"{'perceptual index' if axis == 'pi' else 'NIQE'}  ← better perceptual quality")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
