"""Interactive views for notebooks (ipywidgets, from the ``book`` extra)."""

from __future__ import annotations

from dataclasses import replace


import numpy as np

from .config import GateConfig
from .gate import regate

__all__ = ["gate_explorer", "threshold_sweep"]


def gate_explorer(results, designs, truths, config: GateConfig = GateConfig()):
    """Sliders for the gate's thresholds and a live list of the targets that fall back.

    Parameters
    ----------
    results : sequence of SegmentationResult
        From ``segment_image(..., keep_candidates=True)``.
    designs : sequence of Design or None
    truths : sequence of (M, N) bool ndarray or None
        Ground truth, to show the IoU of the candidate the gate would take.
    config : GateConfig
        Initial slider values.

    Returns
    -------
    ipywidgets.VBox
        Its ``summary`` attribute (an HTML widget) says how many targets fall back.
    """
    import ipywidgets as widgets

    from .metrics import iou

    sliders = {
        "tau_conf": widgets.FloatSlider(value=config.tau_conf, min=0.0, max=1.0, step=0.01, description="tau_conf"),
        "area_tolerance": widgets.FloatSlider(value=config.area_tolerance, min=0.05, max=2.0, step=0.05,
                                              description="area tol."),
        "aspect_tolerance": widgets.FloatSlider(value=config.aspect_tolerance, min=0.05, max=2.0, step=0.05,
                                                description="aspect tol."),
    }
    summary = widgets.HTML()
    table = widgets.HTML()

    def update(_=None):
        cfg = replace(config, **{k: s.value for k, s in sliders.items()})
        decisions = regate(results, designs, cfg)
        rows = []
        n_fb = 0
        for r, d, t in zip(results, decisions, truths):
            if d.accepted:
                score = "" if t is None else f"{iou(r.candidates[d.accepted_index], t):.3f}"
                rows.append(f"<tr><td>{r.stem}:{r.label}</td><td>SAM2 #{d.accepted_index}</td><td>{score}</td>"
                            f"<td></td></tr>")
            else:
                n_fb += 1
                rows.append(f"<tr><td>{r.stem}:{r.label}</td><td><b>fallback</b></td><td></td>"
                            f"<td>{', '.join(d.failed_checks)}</td></tr>")
        summary.value = (f"<b>{n_fb} of {len(results)} targets fall back</b> "
                         f"(tau_conf {cfg.tau_conf:.2f}, area tol. {cfg.area_tolerance:.2f}, "
                         f"aspect tol. {cfg.aspect_tolerance:.2f})")
        table.value = ("<table><tr><th>target</th><th>mask from</th><th>IoU of SAM2 mask</th>"
                       "<th>failed checks of the best candidate</th></tr>" + "".join(rows) + "</table>")
        box.fallbacks = n_fb

    box = widgets.VBox([*sliders.values(), summary, table])
    box.summary = summary
    box.sliders = sliders
    for s in sliders.values():
        s.observe(update, names="value")
    update()
    return box


def threshold_sweep(results, designs, truths, fallback_masks, *, taus=np.linspace(0.5, 1.0, 11),
                    config: GateConfig = GateConfig()):
    """The gate re-run at several confidence thresholds: a static view of what the sliders show.

    Parameters
    ----------
    results : sequence of SegmentationResult
        From ``segment_image(..., keep_candidates=True)``.
    designs : sequence of Design or None
    truths : sequence of (M, N) bool ndarray
    fallback_masks : sequence of (M, N) bool ndarray
        The fallback's mask for each target.
    taus : sequence of float
        Values of ``tau_conf``; the other thresholds stay as ``config`` sets them.
    config : GateConfig

    Returns
    -------
    pandas.DataFrame
        Per threshold: ``tau_conf``, ``fallbacks`` (targets), ``sam2`` (targets accepted)
        and ``iou``, the mean IoU of the masks used (the accepted candidate or the
        fallback's mask, before refinement and edge placement).
    """
    import pandas as pd

    from .metrics import iou

    rows = []
    for tau in taus:
        decisions = regate(results, designs, replace(config, tau_conf=float(tau)))
        used = [iou(r.candidates[d.accepted_index], t) if d.accepted else iou(f, t)
                for r, d, t, f in zip(results, decisions, truths, fallback_masks)]
        n_fb = sum(not d.accepted for d in decisions)
        rows.append({"tau_conf": float(tau), "fallbacks": n_fb, "sam2": len(decisions) - n_fb,
                     "iou": float(np.mean(used)) if used else np.nan})
    return pd.DataFrame(rows)
