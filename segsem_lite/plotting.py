"""Figures of the book, each a function returning a matplotlib Figure."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .overlay import SOURCE_COLOURS

__all__ = [
    "plot_generation_stages",
    "plot_exposure_cases",
    "plot_average_exposure",
    "plot_contour_zoom",
    "plot_table_one",
]


def _figure(nrows: int, ncols: int, size: float = 3.0):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    return fig, axes


def _colour(source: str) -> tuple[float, float, float]:
    return tuple(v / 255 for v in SOURCE_COLOURS[source])


def plot_generation_stages(sample) -> "matplotlib.figure.Figure":
    """How a synthetic CD-SEM image comes about: one panel per stage of :func:`segsem_lite.synth.make_sample`."""
    panels = [
        ("design coverage", sample.stages["coverage"]),
        ("aerial image (optics, focus)", sample.stages["aerial"]),
        ("printed resist = ground truth", sample.stages["printed"]),
        ("SE signal (edge effect)", sample.stages["signal"]),
        ("beam blur + shot noise", sample.stages["noisy"]),
        ("scan lines, charging: the image", sample.image),
    ]
    fig, axes = _figure(2, 3)
    for ax, (title, img) in zip(axes.ravel(), panels):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"exposure case {sample.case.case}, {sample.clip.kind}, {sample.pixel_size_nm:.3f} nm/px", fontsize=10)
    fig.tight_layout()
    return fig


def plot_exposure_cases(samples: Sequence, *, crop: int = 160) -> "matplotlib.figure.Figure":
    """One crop per exposure case, with the ground-truth contour."""
    fig, axes = _figure(2, (len(samples) + 1) // 2, size=2.4)
    for ax, s in zip(axes.ravel(), samples):
        h, w = s.image.shape
        r0, c0 = (h - crop) // 2, (w - crop) // 2
        ax.imshow(s.image[r0:r0 + crop, c0:c0 + crop], cmap="gray", vmin=0, vmax=np.iinfo(s.image.dtype).max)
        ax.contour(s.instances[r0:r0 + crop, c0:c0 + crop] > 0, [0.5], colors=[_colour("truth")], linewidths=0.6)
        ax.set_title(f"case {s.case.case}: dose {s.case.dose:.2f}, {s.case.frames} frames", fontsize=8)
        ax.set_axis_off()
    for ax in axes.ravel()[len(samples):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_average_exposure(table, *, x: str = "exposure_case", y: str = "average_exposure",
                          hue: str | None = None) -> "matplotlib.figure.Figure":
    """Scatter of the Laplacian "average exposure" against a column of ``table`` (a DataFrame)."""
    fig, axes = _figure(1, 1, size=4.0)
    ax = axes[0, 0]
    sc = ax.scatter(table[x], table[y], c=table[hue] if hue else None, cmap="viridis", s=18)
    if hue:
        fig.colorbar(sc, ax=ax, label=hue)
    ax.set_xlabel(x)
    ax.set_ylabel("variance of the Laplacian")
    fig.tight_layout()
    return fig


def plot_contour_zoom(image: np.ndarray, results: Sequence, *, truth: np.ndarray | None = None,
                      box_xyxy: tuple[int, int, int, int] | None = None) -> "matplotlib.figure.Figure":
    """The image with each result's sub-pixel contour (coloured by source), and a zoom on one edge."""
    fig, axes = _figure(1, 2, size=4.5)
    for ax in axes[0]:
        ax.imshow(image, cmap="gray", interpolation="nearest")
        if truth is not None:
            ax.contour(truth, [0.5], colors=[_colour("truth")], linewidths=0.8)
        for r in results:
            for c in r.contours:
                ax.plot(c[:, 0], c[:, 1], color=_colour(r.source), lw=0.9)
            ax.plot(*r.prompt_xy, "+", color="yellow", ms=6)
    if box_xyxy is None and results:
        c = results[0].contours[0]
        x, y = c[len(c) // 4]
        box_xyxy = (int(x) - 12, int(y) - 12, int(x) + 12, int(y) + 12)
    if box_xyxy is not None:
        x0, y0, x1, y1 = box_xyxy
        axes[0, 1].set_xlim(x0, x1)
        axes[0, 1].set_ylim(y1, y0)
        axes[0, 0].add_patch(__import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8))
    axes[0, 0].set_title("contours (green: ground truth)", fontsize=9)
    axes[0, 1].set_title("zoom: pixel grid and sub-pixel contour", fontsize=9)
    fig.tight_layout()
    return fig


def plot_table_one(per_case, *, metrics: Sequence[str] = ("iou", "f1")) -> "matplotlib.figure.Figure":
    """Per exposure case, standard against SegSEM (means with standard deviations), and fallbacks."""
    fig, axes = _figure(1, len(metrics) + 1, size=3.6)
    cases = [str(c) for c in per_case["exposure_case"]]
    x = np.arange(len(cases))
    for ax, m in zip(axes[0], metrics):
        for name, dx, col in (("standard", -0.18, _colour("standard")), ("segsem", 0.18, _colour("sam2"))):
            ax.bar(x + dx, per_case[f"{m}_{name}_mean"], 0.36, yerr=per_case[f"{m}_{name}_std"], color=col,
                   label=name, capsize=2)
        ax.set_xticks(x, cases)
        ax.set_xlabel("exposure case")
        ax.set_ylabel(m)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, loc="lower left")
    ax = axes[0, -1]
    ax.bar(x, per_case["fallback_count"], color=_colour("fallback"))
    ax.set_xticks(x, cases)
    ax.set_xlabel("exposure case")
    ax.set_ylabel("fallback used (targets)")
    fig.tight_layout()
    return fig
