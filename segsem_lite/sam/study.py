"""Measurements the book's chapters make with a SAM2 model: candidates against the truth,
live comparisons of training modes, and where each loss term pushes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ..dataset import Dataset, mask_bbox_xyxy
from ..metrics import diagnose_mask, mask_scores
from .finetune import FinetuneConfig, finetune
from .losses import LossWeights, count_penalty, epe_penalty, iou_reward, outside_region, segmentation_loss, \
    signed_distance

__all__ = ["score_candidates", "compare_train_modes", "loss_term_maps", "paper_signed_total", "intended_total"]


def score_candidates(predictor, dataset: Dataset, stems: list[str], *, max_targets: int | None = None,
                     fit_window: bool = False, refine_passes: int | None = None):
    """Every target's candidates against its truth, straight from the model (no gate, no fallback).

    Each target is prompted with its point; its design's bounding box, when there is one,
    sets the window (and the box prompt of models that take one). With ``fit_window`` a
    target without a design is windowed by its true extent instead of around the point:
    the scale is then known, as a design would give it. ``refine_passes`` overrides the
    model's own (:class:`~segsem_lite.sam.models.InputPolicy`) for targets without a window.

    Returns
    -------
    pandas.DataFrame
        One row per target: ``stem, label, exposure_case, area_px`` (the truth's pixels),
        ``touches_other`` (another labelled object within 2 px of it: overlapping, nested or
        adjacent), ``chosen_iou`` (the candidate with the
        highest predicted IoU), ``best_iou`` (best of K), ``pred_iou`` (predicted IoU of the
        chosen one), ``failure`` (:func:`segsem_lite.metrics.diagnose_mask` of the chosen one),
        and per candidate ``iou_k`` and ``score_k``.
    """
    import pandas as pd

    rows = []
    for stem in stems:
        image = dataset.load_image(stem)
        labels = dataset.load_mask(stem)
        predictor.set_image(image)
        for t in dataset.targets(stem, mask=labels, shape=image.shape, border=False):
            truth = labels == t.label
            region = t.design.bbox_xyxy()
            if region is None and fit_window:
                region = mask_bbox_xyxy(truth)
            masks, scores, _ = predictor.predict(np.array([t.prompt_xy]), np.array([1]), region_xyxy=region,
                                                 refine_passes=refine_passes)
            ious = [mask_scores(m, truth).iou for m in masks]
            top = int(np.argmax(scores))
            ring = ndi.binary_dilation(truth, iterations=2) & ~truth
            row = {"stem": stem, "label": t.label, "exposure_case": t.exposure_case or "-",
                   "area_px": int(truth.sum()), "touches_other": bool((labels[ring] > 0).any()),
                   "chosen_iou": ious[top], "best_iou": max(ious), "pred_iou": float(scores[top]),
                   "failure": diagnose_mask(masks[top], truth)}
            row.update({f"iou_{k}": v for k, v in enumerate(ious)})
            row.update({f"score_{k}": float(v) for k, v in enumerate(scores)})
            rows.append(row)
            if max_targets and len(rows) >= max_targets:
                return pd.DataFrame(rows)
    return pd.DataFrame(rows)


def compare_train_modes(model, spec, dataset, run_root: str | Path, *, modes=("encoders", "decoder", "all"),
                        config: FinetuneConfig = FinetuneConfig(), device: str = "cpu", base_name: str = "",
                        progress: bool = False) -> dict:
    """Fine-tune copies of the same start in each mode, on the same data and seed.

    Returns
    -------
    dict of str to FinetuneResult
    """
    from dataclasses import replace

    out = {}
    for mode in modes:
        torch.manual_seed(config.seed)
        out[mode] = finetune(copy.deepcopy(model), spec, dataset, Path(run_root) / mode,
                             config=replace(config, train=mode), device=device, base_name=base_name,
                             progress=progress)
    return out


def loss_term_maps(truth: np.ndarray, pred: np.ndarray, *, weights: LossWeights = LossWeights(),
                   confidence: float = 3.0) -> tuple[dict, dict]:
    """Where each term of the loss pushes a prediction: its gradient with respect to the logits.

    Parameters
    ----------
    truth, pred : (H, W) bool ndarray
    weights : LossWeights
    confidence : float
        The prediction's logits are ``+confidence`` inside ``pred`` and ``-confidence`` outside.

    Returns
    -------
    maps : dict of str to (H, W) ndarray
        Minus the gradient of each weighted term (positive: the term wants the pixel in
        the mask), for ``seg``, ``iou_reward``, ``count`` and ``epe``.
    values : dict of str to float
        The unweighted terms.
    """
    t = torch.from_numpy(np.asarray(truth, np.float32))[None]
    sdf = torch.from_numpy(signed_distance(truth))[None]
    outside = torch.from_numpy(outside_region(truth))[None]
    base = torch.from_numpy(np.where(pred, confidence, -confidence).astype(np.float32))[None]
    fns = {
        "seg": lambda lg: segmentation_loss(lg[:, None], t, torch.ones(1, 1), weights)[0],
        "iou_reward": lambda lg: -weights.iou_reward * iou_reward(lg, t),
        "count": lambda lg: weights.count * count_penalty(lg, t, outside),
        "epe": lambda lg: weights.epe * epe_penalty(lg, sdf),
    }
    maps, values = {}, {}
    for name, fn in fns.items():
        lg = base.clone().requires_grad_(True)
        v = fn(lg)
        v.backward()
        maps[name] = -lg.grad[0].numpy()
        w = {"seg": 1.0, "iou_reward": -weights.iou_reward, "count": weights.count, "epe": weights.epe}[name]
        values[name] = float(v.detach()) / w
    return maps, values


def paper_signed_total(terms: dict, weights: LossWeights = LossWeights()) -> float:
    """Eq. 1 as printed: ``L_seg + l_IoU R_IoU - l_count P_count - l_EPE P_EPE`` (rewards fragments)."""
    return terms["seg"] + weights.iou_reward * terms["iou_reward"] - weights.count * terms["count"] \
        - weights.epe * terms["epe"]


def intended_total(terms: dict, weights: LossWeights = LossWeights()) -> float:
    """Eq. 1 as meant: ``L_seg - l_IoU R_IoU + l_count P_count + l_EPE P_EPE``."""
    return terms["seg"] - weights.iou_reward * terms["iou_reward"] + weights.count * terms["count"] \
        + weights.epe * terms["epe"]
