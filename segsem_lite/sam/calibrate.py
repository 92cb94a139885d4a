"""Calibrate a model's IoU head on held-out images: ``segsem calibrate DATASET --model M --out FILE``.

The gate accepts a candidate when its predicted IoU reaches ``tau_conf`` (the paper's
0.90), so the prediction has to mean what it says. A small model's IoU head is trained
on random points in training windows and scored at window resolution; at inference the
prompt is the design's point and the IoU is what the image-resolution mask achieves, so
the head is biased (for mini-sem, low by about 0.05). Calibration runs the pipeline's own
prompts over a labelled dataset the model did not train on, pairs every candidate's raw
prediction with its true IoU, and fits a monotone (isotonic) map from one to the other.
The map is stored in the checkpoint (``ModelSpec.iou_calibration``) and applied by the
predictor; being monotone, it never reorders a target's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import SegSEMError

__all__ = ["CalibrationFit", "isotonic", "fit_calibration", "collect_scores", "calibrate_model"]


def isotonic(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` (already ordered), by pool-adjacent-violators."""
    y = np.asarray(y, float)
    w = np.ones_like(y) if w is None else np.asarray(w, float)
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y, w):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v, wt, n = vals.pop(), wts.pop(), sizes.pop()
            vals[-1] = (vals[-1] * wts[-1] + v * wt) / (wts[-1] + wt)
            wts[-1] += wt
            sizes[-1] += n
    return np.repeat(vals, sizes)


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted map and how well it fits.

    Attributes
    ----------
    x, y : tuple of float
        Knots: raw predicted IoU and the IoU it achieves (``numpy.interp`` between them).
    n : int
        Candidates it was fitted on.
    mae_before, mae_after : float
        Mean absolute error of predicted against true IoU, raw and mapped (on the fitting data).
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    n: int
    mae_before: float
    mae_after: float

    def apply(self, scores) -> np.ndarray:
        return np.interp(np.asarray(scores, float), self.x, self.y)

    def to_dict(self) -> dict:
        return {"x": list(self.x), "y": list(self.y), "n": self.n, "mae_before": self.mae_before,
                "mae_after": self.mae_after}


def fit_calibration(predicted, true, *, per_bin: int = 20) -> CalibrationFit:
    """Isotonic map from predicted to true IoU over bins of ``per_bin`` candidates.

    Candidates are sorted by predicted IoU and grouped into bins of about ``per_bin``
    (the bins keep the map from following single outliers); the bins' mean true IoU is
    made non-decreasing, and each bin becomes a knot at its mean predicted IoU.
    """
    p = np.asarray(predicted, float)
    t = np.asarray(true, float)
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    if len(p) < 2 * per_bin:
        raise SegSEMError(f"calibration needs at least {2 * per_bin} candidates with ground truth, got {len(p)}")
    order = np.argsort(p, kind="stable")
    p, t = p[order], t[order]
    groups = np.array_split(np.arange(len(p)), max(2, len(p) // per_bin))
    bx = np.array([p[g].mean() for g in groups])
    by = np.array([t[g].mean() for g in groups])
    fy = np.clip(isotonic(by, np.array([len(g) for g in groups], float)), 0.0, 1.0)
    # bins with the same mean prediction (ties in the raw scores) keep their first knot: numpy.interp needs
    # increasing x
    keep = np.r_[True, np.diff(bx) > 1e-9]
    x, y = bx[keep], fy[keep]
    mapped = np.interp(p, x, y)
    return CalibrationFit(x=tuple(float(v) for v in x), y=tuple(float(v) for v in y), n=int(len(p)),
                          mae_before=float(np.abs(p - t).mean()), mae_after=float(np.abs(mapped - t).mean()))


def collect_scores(predictor, dataset, *, split: str | None = None, stems: list[str] | None = None,
                   progress: bool = False):
    """Raw predicted IoU and true IoU of every candidate of every target, with the pipeline's prompts.

    Each target is prompted as :func:`segsem_lite.pipeline.segment_target` prompts it (its
    point, and its design box as the window and, for box-prompt models, the box prompt);
    every candidate counts, whatever the gate or the fallback would make of it.

    Returns
    -------
    (predicted, true) : two 1-D float ndarrays
    """
    from tqdm.auto import tqdm

    from ..batch import _iter_images
    from ..dataset import Dataset
    from ..metrics import mask_scores

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not ds.has_masks:
        raise SegSEMError(f"{ds.root}: calibration needs ground truth, but there is no masks/ folder")
    stems = list(stems) if stems is not None else (ds.split(split) if split else ds.stems)
    was = predictor.calibrated
    predictor.calibrated = False
    pred, true = [], []
    try:
        for stem, image, mask, targets, error in tqdm(_iter_images(ds, stems), total=len(stems), disable=not progress,
                                                      desc="calibrate", unit="img"):
            if error is not None or not targets:
                continue
            predictor.set_image(image)
            for t in targets:
                region = t.design.bbox_xyxy() if t.design is not None else None
                masks, scores, _ = predictor.predict(np.array([t.prompt_xy], dtype=np.float32), np.array([1]),
                                                     multimask_output=True, region_xyxy=region)
                truth = mask == t.label
                for cand, score in zip(masks, scores):
                    pred.append(float(score))
                    true.append(mask_scores(cand, truth).iou)
    finally:
        predictor.calibrated = was
    return np.asarray(pred), np.asarray(true)


def calibrate_model(model: str, dataset, out, *, checkpoint: str | None = None, split: str | None = None,
                    stems: list[str] | None = None, data: str | None = None, device: str = "auto",
                    per_bin: int = 20, progress: bool = False) -> CalibrationFit:
    """Fit the IoU-head calibration of ``model`` on ``dataset`` and save a checkpoint carrying it.

    ``out`` is a project checkpoint (weights, configuration, and the calibration), loadable
    with ``--model OUT``; the model's own weights are unchanged. ``out`` may be the model's
    own checkpoint: ``segsem finetune`` calibrates ``best.pt`` in place on the run's
    validation images (``stems``). ``data`` describes the images in the calibration record.
    """
    from . import load_predictor
    from .models import save_checkpoint

    predictor = load_predictor(model, checkpoint=checkpoint, device=device)
    pred, true = collect_scores(predictor, dataset, split=split, stems=stems, progress=progress)
    fit = fit_calibration(pred, true, per_bin=per_bin)
    info = {**fit.to_dict(), "data": data or str(dataset) + (f" ({split} split)" if split else "")}
    spec = replace(predictor.spec, iou_calibration=info)
    save_checkpoint(Path(out), predictor.model.float().cpu(), spec)
    return fit

