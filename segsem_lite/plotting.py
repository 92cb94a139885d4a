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
    "plot_threshold_sweep",
    "plot_message",
    "plot_term_maps",
    "plot_training_curves",
    "plot_iou_distributions",
    "plot_mask_examples",
    "plot_calibration",
    "plot_edge_placement",
    "plot_field",
    "plot_cd_histograms",
    "plot_roughness_psd",
    "plot_design_alignment",
    "plot_epe_map",
    "plot_layout_overlay",
]

#: Colour of a contour by the kind of feature it encloses.
KIND_COLOURS = {"line": "tab:red", "hole": "tab:orange", "pillar": "tab:cyan", "shape": "tab:purple",
                "partial": "0.6"}


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


def plot_table_one(per_case, *, metrics: Sequence[str] = ("iou", "f1"),
                   xlabel: str = "exposure case", gated: bool = True) -> "matplotlib.figure.Figure":
    """Per exposure case, standard, standard + edge placement and SegSEM (means with standard deviations), and
    fallbacks.

    Parameters
    ----------
    per_case : DataFrame
        ``EvaluationReport.per_case``.
    metrics : sequence of str
        The metrics drawn, one panel each.
    xlabel : str
        What the rows are (exposure cases, or the appearance conditions of the second renderer).
    gated : bool
        Whether SegSEM ran with a SAM2 model (and so a gate); without one nothing can fall back.

    Returns
    -------
    Figure
        When no target fell back, the fallback panel says so instead of staying empty.
    """
    fig, axes = _figure(1, len(metrics) + 1, size=3.6)
    cases = [str(c) for c in per_case["exposure_case"]]
    turn = 45 if max(len(c) for c in cases) > 3 else 0
    x = np.arange(len(cases))
    bars = (("standard", -0.27, _colour("standard"), None), ("standard_ep", 0.0, _colour("standard"), "//"),
            ("segsem", 0.27, _colour("sam2"), None))
    names = {"standard": "standard", "standard_ep": "standard + edge placement", "segsem": "SegSEM"}
    for ax, m in zip(axes[0], metrics):
        for name, dx, col, hatch in bars:
            ax.bar(x + dx, per_case[f"{m}_{name}_mean"], 0.27, yerr=per_case[f"{m}_{name}_std"], color=col,
                   hatch=hatch, edgecolor="white" if hatch else None, label=names[name], capsize=2)
        ax.set_xticks(x, cases, rotation=turn, ha="right" if turn else "center")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(m)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, loc="lower left")
    ax = axes[0, -1]
    ax.bar(x, per_case["fallback_count"], color=_colour("fallback"))
    ax.set_xticks(x, cases, rotation=turn, ha="right" if turn else "center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fallback used (targets)")
    if int(per_case["fallback_count"].sum()) == 0:
        ax.set_ylim(0, 1)
        why = (f"no target fell back:\nthe gate accepted a SAM2\ncandidate on all {int(per_case['n'].sum())}"
               if gated else "no SAM2 model:\nno gate, no fallback")
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    fig.tight_layout()
    return fig


def plot_term_maps(truth: np.ndarray, pred: np.ndarray, maps: dict) -> "matplotlib.figure.Figure":
    """The truth, a prediction, and where each loss term pushes it (red: into the mask, blue: out)."""
    fig, axes = _figure(1, 2 + len(maps), size=2.6)
    axes[0, 0].imshow(truth, cmap="gray")
    axes[0, 0].set_title("truth", fontsize=9)
    axes[0, 1].imshow(pred, cmap="gray")
    axes[0, 1].set_title("prediction", fontsize=9)
    for ax, (name, m) in zip(axes[0, 2:], maps.items()):
        lim = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.contour(truth, [0.5], colors="k", linewidths=0.5)
        ax.set_title(f"{name} (max {lim:.1e})", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_training_curves(logs: dict, *, loss: str = "total") -> "matplotlib.figure.Figure":
    """Training loss (smoothed) and validation IoU per step, one line per run (``{name: DataFrame}``)."""
    import pandas as pd

    fig, axes = _figure(1, 2, size=4.0)
    for name, df in logs.items():
        df = df.apply(pd.to_numeric, errors="coerce")
        axes[0, 0].plot(df["step"], df[loss].rolling(10, min_periods=1).mean(), label=name)
        v = df.dropna(subset=["val_iou"])
        axes[0, 1].plot(v["step"], v["val_iou"], marker="o", ms=3, label=name)
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_ylabel(f"training loss ({loss}, rolling mean of 10)")
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_ylabel("validation IoU")
    for ax in axes[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_iou_distributions(series: dict, *, xlabel: str = "IoU") -> "matplotlib.figure.Figure":
    """Histograms of IoU values, one per named set (``{name: values}``)."""
    fig, axes = _figure(1, 1, size=4.5)
    bins = np.linspace(0, 1, 21)
    for name, values in series.items():
        axes[0, 0].hist(np.asarray(values, float), bins=bins, alpha=0.55, label=f"{name} (mean {np.mean(values):.2f})")
    axes[0, 0].set_xlabel(xlabel)
    axes[0, 0].set_ylabel("targets")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_mask_examples(examples: Sequence[dict], *, crop: int = 96) -> "matplotlib.figure.Figure":
    """Crops around targets: image, truth (green) and a predicted mask (colour of its source).

    Each example is a dict with ``image``, ``truth``, ``pred``, ``title`` and optionally
    ``source`` and ``prompt_xy``.
    """
    n = max(1, len(examples))
    fig, axes = _figure(1, n, size=2.6)
    for ax, ex in zip(axes[0], examples):
        rows, cols = np.nonzero(ex["truth"])
        cy, cx = (int(rows.mean()), int(cols.mean())) if len(rows) else (ex["image"].shape[0] // 2,) * 2
        half = max(crop // 2, int(max(np.ptp(rows), np.ptp(cols)) * 0.7) if len(rows) else crop // 2)
        r0, c0 = max(0, cy - half), max(0, cx - half)
        sl = (slice(r0, cy + half), slice(c0, cx + half))
        ax.imshow(ex["image"][sl], cmap="gray")
        ax.contour(ex["truth"][sl], [0.5], colors=[_colour("truth")], linewidths=0.8)
        if ex["pred"][sl].any():
            ax.contour(ex["pred"][sl], [0.5], colors=[_colour(ex.get("source", "sam2"))], linewidths=0.8)
        if ex.get("prompt_xy") is not None:
            ax.plot(ex["prompt_xy"][0] - c0, ex["prompt_xy"][1] - r0, "+", color="yellow", ms=7)
        ax.set_title(ex.get("title", ""), fontsize=9)
        ax.set_axis_off()
    _legend_truth_and_sources(fig, {ex.get("source", "sam2") for ex in examples})
    return fig


_SOURCE_NAMES = {"sam2": "SAM2 mask", "fallback": "fallback mask", "standard": "standard pipeline"}


def _legend_truth_and_sources(fig, sources) -> None:
    """A legend under the panels: the truth's colour and each mask source's."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_colour("truth"), lw=1.5, label="truth")]
    handles += [Line2D([], [], color=_colour(s), lw=1.5, label=_SOURCE_NAMES.get(s, s)) for s in sorted(sources)]
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)


def plot_threshold_sweep(sweep, *, tau: float | None = None) -> "matplotlib.figure.Figure":
    """Targets that fall back and mean IoU of the masks used, against the gate's confidence threshold."""
    fig, axes = _figure(1, 1, size=4.2)
    ax = axes[0, 0]
    ax.plot(sweep["tau_conf"], sweep["fallbacks"], "o-", color=_colour("fallback"), label="targets that fall back")
    ax.set_xlabel("tau_conf")
    ax.set_ylabel("targets that fall back")
    ax2 = ax.twinx()
    ax2.plot(sweep["tau_conf"], sweep["iou"], "s--", color=_colour("sam2"), label="mean IoU of the masks used")
    ax2.set_ylabel("mean IoU of the masks used")
    ax2.set_ylim(0, 1)
    if tau is not None:
        ax.axvline(tau, color="k", lw=0.8, ls=":", label=f"tau_conf = {tau:.2f}")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_calibration(predicted, true, *, tau: float | None = None) -> "matplotlib.figure.Figure":
    """Predicted IoU against true IoU, with the diagonal and the gate's threshold."""
    fig, axes = _figure(1, 1, size=4.2)
    ax = axes[0, 0]
    ax.scatter(predicted, true, s=10, alpha=0.6)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    if tau is not None:
        ax.axvline(tau, color=_colour("fallback"), lw=1, label=f"tau_conf = {tau:.2f}")
        ax.legend(fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted IoU")
    ax.set_ylabel("true IoU")
    fig.tight_layout()
    return fig


def plot_edge_placement(image: np.ndarray, before: np.ndarray, after: np.ndarray, truth: np.ndarray | None = None,
                        *, crop: int = 40, reach: float = 10.0) -> "matplotlib.figure.Figure":
    """Edge placement at one place of a contour: a zoom with the contours before and after,
    and the image profile across the edge there.

    Parameters
    ----------
    image : (M, N) ndarray
    before, after : (K, 2) ndarray
        Contour (x, y) before and after placement.
    truth : (K, 2) ndarray, optional
        Ground-truth contour.
    crop : int
        Half side of the zoom in px.
    reach : float
        Half length of the profile in px.
    """
    from scipy import ndimage as ndi

    fig, axes = _figure(1, 2, size=3.6)
    ax, bx = axes[0]
    i = int(np.argmax(after[:, 0]))  # the rightmost point: on a side, not a corner
    p = after[i]
    tangent = after[(i + 2) % len(after)] - after[i - 2]
    n = np.array([tangent[1], -tangent[0]]) / max(np.hypot(*tangent), 1e-9)
    x0, y0 = int(p[0]) - crop, int(p[1]) - crop
    ax.imshow(image, cmap="gray", interpolation="nearest")
    for c, colour, label in ((truth, "lime", "truth"), (before, "orange", "before"), (after, "red", "placed")):
        if c is not None:
            ax.plot(c[:, 0], c[:, 1], color=colour, lw=1.0, label=label)
    ax.plot([p[0] - reach * n[0], p[0] + reach * n[0]], [p[1] - reach * n[1], p[1] + reach * n[1]], "c-", lw=0.8)
    ax.set_xlim(x0, x0 + 2 * crop)
    ax.set_ylim(y0 + 2 * crop, y0)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("zoom on one edge", fontsize=9)
    t = np.linspace(-reach, reach, 161)
    xy = p[None] + t[:, None] * n[None]
    prof = ndi.map_coordinates(np.asarray(image, float), [xy[:, 1], xy[:, 0]], order=1)
    bx.plot(t, prof, color="0.3", lw=1.0)

    def crossing(c):
        if c is None:
            return None
        d = np.hypot(*(c - p).T)
        q = c[int(np.argmin(d))]
        return float(np.dot(q - p, n))

    for c, colour, label in ((truth, "lime", "truth"), (before, "orange", "before"), (after, "red", "placed")):
        u = crossing(c)
        if u is not None and abs(u) <= reach:
            bx.axvline(u, color=colour, lw=1.2, label=f"{label} ({u:+.2f} px)")
    bx.set_xlabel("along the normal (px, outward)")
    bx.set_ylabel("grey level")
    bx.legend(fontsize=7)
    bx.set_title("profile across the edge", fontsize=9)
    fig.tight_layout()
    return fig


def plot_field(image: np.ndarray, contours: dict, kinds: dict, *, data_bar_row: int | None = None,
               title: str = "", zoom: tuple[int, int, int, int] | None = None) -> "matplotlib.figure.Figure":
    """An SEM image with its extracted contours coloured by kind, the data bar shaded, and a zoom.

    Parameters
    ----------
    image : (M, N) ndarray
    contours : dict of label to list of (K, 2) ndarray
        Contours (x, y) px per target.
    kinds : dict of label to str
        Kind of each target (``line``, ``hole``, ``pillar``, ``shape``, ``partial``).
    data_bar_row : int, optional
        First row of the data bar, shaded as left out.
    title : str
    zoom : (x0, y0, x1, y1), optional
        The second panel's window; a quarter of the field's width from its corner when omitted.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    fig, axes = _figure(1, 2, size=4.6)
    rows, cols = image.shape[:2]
    if zoom is None:
        side = max(32, min(cols, data_bar_row or rows) // 4)
        zoom = (0, 0, side, side)
    for ax in axes[0]:
        ax.imshow(image, cmap="gray", interpolation="nearest")
        for label, cs in contours.items():
            for c in cs:
                ax.plot(c[:, 0], c[:, 1], color=KIND_COLOURS.get(kinds.get(label), "tab:red"), lw=0.7)
        if data_bar_row is not None and data_bar_row < rows:
            ax.add_patch(Rectangle((-0.5, data_bar_row - 0.5), cols, rows - data_bar_row, color="tab:blue", alpha=0.35))
        ax.set_axis_off()
    axes[0][0].add_patch(Rectangle((zoom[0], zoom[1]), zoom[2] - zoom[0], zoom[3] - zoom[1], fill=False,
                                   color="yellow", lw=1.0))
    axes[0][0].set_title(title or "whole image", fontsize=9)
    axes[0][1].set_xlim(zoom[0] - 0.5, zoom[2] - 0.5)
    axes[0][1].set_ylim(zoom[3] - 0.5, zoom[1] - 0.5)
    axes[0][1].set_title("zoom (yellow box)", fontsize=9)
    present = sorted({kinds.get(k) for k in contours} - {None})
    handles = [Line2D([], [], color=KIND_COLOURS[k], label=k) for k in present if k in KIND_COLOURS]
    if data_bar_row is not None and data_bar_row < rows:
        handles.append(Rectangle((0, 0), 1, 1, color="tab:blue", alpha=0.35, label="data bar (left out)"))
    axes[0][1].legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.8)
    fig.tight_layout()
    return fig


def plot_cd_histograms(records, *, unit: str = "cd_nm") -> "matplotlib.figure.Figure":
    """Histogram of the CD of the whole (not partial) features, one panel per image.

    Parameters
    ----------
    records : pandas.DataFrame
        ``records.csv`` of an extract run (columns ``stem``, ``kind``, ``status`` and ``unit``).
    unit : str
        The column to histogram (``cd_nm`` or ``cd_px``).
    """
    ok = records[(records["status"] != "error") & (records["kind"] != "partial")]
    stems = list(dict.fromkeys(ok["stem"]))
    fig, axes = _figure(1, max(1, len(stems)), size=2.6)
    for ax, stem in zip(axes[0], stems):
        rows = ok[ok["stem"] == stem]
        kind = rows["kind"].mode().iloc[0]
        values = rows.loc[rows["kind"] == kind, unit].astype(float)
        ax.hist(values, bins=min(30, max(5, len(values) // 4)), color=KIND_COLOURS.get(kind, "0.4"))
        ax.axvline(values.median(), color="k", lw=1.0)
        ax.set_title(f"{stem}\n{len(values)} {kind}s, median {values.median():.2f}", fontsize=8)
        ax.set_xlabel(unit.replace("_", " "), fontsize=8)
    fig.tight_layout()
    return fig


def plot_roughness_psd(psd, *, title: str = "") -> "matplotlib.figure.Figure":
    """The mean PSD of line edges (LER) and widths (LWR), with the white-noise floors read at high frequency.

    Parameters
    ----------
    psd : pandas.DataFrame
        A ``<stem>.psd.csv`` of an extract run.
    title : str
    """
    fig, axes = _figure(1, 1, size=4.2)
    ax = axes[0][0]
    f = psd["frequency_per_nm"].to_numpy()[1:]
    for column, floor, colour, label in (("psd_ler_nm3", "floor_ler_nm3", "tab:red", "LER (edges)"),
                                         ("psd_lwr_nm3", "floor_lwr_nm3", "tab:blue", "LWR (widths)")):
        ax.loglog(f, psd[column].to_numpy()[1:], color=colour, lw=1.0, label=label)
        ax.axhline(float(psd[floor].iloc[0]), color=colour, ls="--", lw=0.8, label=f"{label.split()[0]} noise floor")
    ax.set_xlabel("spatial frequency (1/nm)")
    ax.set_ylabel("PSD (nm$^3$)")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{int(psd['n_edges'].iloc[0])} edges of {int(psd['length'].iloc[0])} samples", fontsize=9)
    fig.tight_layout()
    return fig


def plot_design_alignment(image: np.ndarray, placement, *, title: str = "") -> "matplotlib.figure.Figure":
    """The design over the image at the nominal site (left) and at the aligned site (right)."""
    fig, axes = _figure(1, 2, size=4.2)
    axes = axes[0]
    for ax, site, name in ((axes[0], placement.nominal, "nominal site"), (axes[1], placement.site, "aligned site")):
        ax.imshow(image, cmap="gray")
        for poly in placement.polygons.values():
            p = site.to_pixels(poly)
            p = np.vstack([p, p[:1]])
            ax.plot(p[:, 0], p[:, 1], color="tab:cyan", lw=1.0)
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
        ax.set_title(name)
        ax.axis("off")
    a = placement.alignment
    fig.suptitle(title or f"design (cyan) on the image; correction ({a.dx_nm:+.1f}, {a.dy_nm:+.1f}) nm, "
                 f"score {a.score:.2f}")
    fig.tight_layout()
    return fig


def plot_epe_map(image: np.ndarray, site, gauges, contours_px: Sequence = (), *, limit_nm: float | None = None,
                 title: str = "") -> "matplotlib.figure.Figure":
    """EPE at each edge gauge, coloured on the image (red: the printed edge lies outside the design, blue:
    inside, yellow: on it), with the extracted contours in black."""
    import matplotlib.pyplot as plt

    g = gauges[gauges["type"] == "edge"].dropna(subset=["epe_nm"])
    fig, ax = plt.subplots(figsize=(6.0, 5.2))
    ax.imshow(image, cmap="gray")
    for c in contours_px:
        ax.plot(c[:, 0], c[:, 1], color="black", lw=0.5)
    if len(g):
        xy = site.to_pixels(g[["x_nm", "y_nm"]].to_numpy(float))
        lim = limit_nm or float(np.nanpercentile(np.abs(g["epe_nm"]), 95)) or 1.0
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=g["epe_nm"], cmap="RdYlBu_r", vmin=-lim, vmax=lim, s=10)
        fig.colorbar(sc, ax=ax, label="EPE (nm), + outside the design")
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.axis("off")
    ax.set_title(title or "EPE at the gauges along the design edges")
    fig.tight_layout()
    return fig


def plot_layout_overlay(design: Sequence, contours: Sequence, box_nm: tuple[float, float, float, float], *,
                        title: str = "") -> "matplotlib.figure.Figure":
    """Design polygons (cyan) and contours (red) in layout nm, each drawn when its centre lies in ``box_nm``
    (xmin, ymin, xmax, ymax)."""
    import matplotlib.pyplot as plt

    x0, y0, x1, y1 = box_nm
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for polys, colour, lw in ((design, "tab:cyan", 1.2), (contours, "tab:red", 0.8)):
        for poly in polys:
            p = np.asarray(poly, float)
            cx, cy = p.mean(axis=0)
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                p = np.vstack([p, p[:1]])
                ax.plot(p[:, 0], p[:, 1], color=colour, lw=lw)
    ax.set_aspect("equal")
    ax.set_xlabel("layout x (nm)")
    ax.set_ylabel("layout y (nm)")
    ax.set_title(title or "design (cyan), contours (red)")
    fig.tight_layout()
    return fig


def plot_message(text: str) -> "matplotlib.figure.Figure":
    """A small figure that says why there is nothing to show (a chapter's figure on data without such a case)."""
    fig, axes = _figure(1, 1, size=1.0)
    fig.set_size_inches(6.0, 0.8)
    axes[0, 0].text(0.5, 0.5, text, ha="center", va="center", fontsize=10)
    axes[0, 0].set_axis_off()
    return fig
