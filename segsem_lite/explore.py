"""Interactive views for notebooks (ipywidgets, from the ``book`` extra)."""

from __future__ import annotations

from dataclasses import replace


from .config import GateConfig
from .gate import regate

__all__ = ["gate_explorer"]


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
