"""The four-term SegSEM loss, each term its own differentiable function (SegSEM III-B2, Eq. 1).

``L = L_seg - lambda_IoU * R_IoU + lambda_count * P_count + lambda_EPE * P_EPE``

Eq. 1 of the paper prints ``L_seg + lambda_IoU R_IoU - lambda_count P_count - lambda_EPE P_EPE``:
minimising that would *punish* overlap and *reward* fragments and edge errors. The text
calls R a reward and the P terms penalties, so this module implements the intended
direction: the reward is subtracted, the penalties added.

Shapes: ``logits`` (B, K, H, W) mask logits of K candidates; ``target`` (B, H, W) in {0, 1};
``iou_pred`` (B, K). Terms that score one mask use the candidate chosen by ``L_seg`` (the
one with the lowest focal + dice loss, SAM2's rule for multimask training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

__all__ = [
    "LossWeights",
    "focal_loss",
    "dice_loss",
    "segmentation_loss",
    "iou_reward",
    "count_penalty",
    "epe_penalty",
    "signed_distance",
    "outside_region",
    "segsem_loss",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights of Eq. 1 (the paper determines them empirically) and of L_seg's parts.

    Attributes
    ----------
    focal, dice, iou_head : float
        SAM2's recipe: focal x20, dice x1, IoU-head error x1.
    iou_reward, count, epe : float
        lambda_IoU, lambda_count, lambda_EPE.
    """

    focal: float = 20.0
    dice: float = 1.0
    iou_head: float = 1.0
    iou_reward: float = 0.5
    count: float = 0.5
    epe: float = 0.01


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss per mask, mean over pixels: (B, K) (Lin et al. 2017, as in SAM2's training)."""
    t = target[:, None].expand_as(logits).float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask: (B, K)."""
    p = torch.sigmoid(logits).flatten(2)
    t = target[:, None].expand_as(logits).float().flatten(2)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def _hard_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = logits > 0
    t = target[:, None].bool().expand_as(pred)
    inter = (pred & t).flatten(2).sum(-1).float()
    union = (pred | t).flatten(2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor,
                      weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, torch.Tensor]:
    """L_seg: SAM2's recipe. Focal x20 + dice on the best of the K candidates, plus the
    squared error of every candidate's predicted IoU against its true IoU (which keeps the
    gate's confidence meaningful).

    Returns
    -------
    loss : () tensor
        Mean over the batch.
    best : (B,) long tensor
        Index of the candidate with the lowest focal + dice loss.
    """
    per_mask = weights.focal * focal_loss(logits, target) + weights.dice * dice_loss(logits, target)
    best = per_mask.detach().argmin(dim=1)
    mask_term = per_mask.gather(1, best[:, None]).squeeze(1)
    true_iou = _hard_iou(logits.detach(), target)
    iou_term = ((iou_pred.float() - true_iou) ** 2).mean(dim=1)
    return (mask_term + weights.iou_head * iou_term).mean(), best


def _best(logits: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, best.view(-1, 1, 1, 1).expand(-1, 1, *logits.shape[2:])).squeeze(1)


def iou_reward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """R_IoU: soft IoU ``sum(p t) / sum(p + t - p t)`` of a mask (B, H, W), mean over the batch; 1 at the truth."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.float().flatten(1)
    inter = (p * t).sum(-1)
    return (inter / (p.sum(-1) + t.sum(-1) - inter).clamp(min=1e-6)).mean()


def outside_region(target: np.ndarray, *, margin_px: int = 3) -> np.ndarray:
    """Where a fragment would be spurious: outside the target grown by ``margin_px`` (H, W) -> float."""
    grown = ndi.binary_dilation(np.asarray(target, bool), iterations=margin_px) if margin_px else np.asarray(target, bool)
    return (~grown).astype(np.float32)


def count_penalty(logits: torch.Tensor, target: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """P_count: predicted mass away from the prompted target, per unit target area.

    A differentiable stand-in for "number of spurious fragments": the sum of mask
    probability over ``outside`` (pixels farther than a margin from the target, see
    :func:`outside_region`), divided by the target's area. 0 at the truth; every pixel of a
    fragment adds to it, so its gradient removes fragments.
    """
    p = torch.sigmoid(logits)
    area = target.float().flatten(1).sum(-1).clamp(min=1.0)
    return ((p * outside).flatten(1).sum(-1) / area).mean()


def signed_distance(target: np.ndarray) -> np.ndarray:
    """Signed distance to the target's boundary in px: negative inside, positive outside (H, W) float32."""
    t = np.asarray(target, bool)
    if not t.any():
        return np.full(t.shape, 0.0, np.float32)
    return (ndi.distance_transform_edt(~t) - ndi.distance_transform_edt(t)).astype(np.float32)


def epe_penalty(logits: torch.Tensor, sdf: torch.Tensor, *, max_distance_px: float = 10.0) -> torch.Tensor:
    """P_EPE: a boundary-distance penalty in pixels (after Kervadec et al. 2019's boundary loss).

    ``sum(p * max(phi, 0) + (1 - p) * max(-phi, 0)) / perimeter``, with ``phi`` the signed
    distance to the true boundary (:func:`signed_distance`): a wrong pixel costs its
    distance to the true edge, up to ``max_distance_px`` (far fragments are the count
    penalty's business). 0 at the truth; for a straight edge displaced by ``d`` px it is
    about ``d^2 / 2``.
    """
    p = torch.sigmoid(logits)
    sdf_c = sdf.clamp(-max_distance_px, max_distance_px)
    cost = p * sdf_c.clamp(min=0) + (1 - p) * (-sdf_c).clamp(min=0)
    # boundary length: pixels on either side of the edge (|phi| = 1), halved
    perimeter = ((sdf.abs() <= 1.0).float().flatten(1).sum(-1) / 2).clamp(min=1.0)
    return (cost.flatten(1).sum(-1) / perimeter).mean()


def segsem_loss(logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor, *, sdf: torch.Tensor,
                outside: torch.Tensor, weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict]:
    """The total loss ``L_seg - l_IoU R_IoU + l_count P_count + l_EPE P_EPE`` and its terms.

    Parameters
    ----------
    logits : (B, K, H, W) tensor
    target : (B, H, W) tensor
    iou_pred : (B, K) tensor
    sdf : (B, H, W) tensor
        Signed distances of the targets, :func:`signed_distance`.
    outside : (B, H, W) tensor
        Spurious-fragment regions, :func:`outside_region`.
    weights : LossWeights

    Returns
    -------
    total : () tensor
    terms : dict of str to float
        ``seg``, ``iou_reward``, ``count``, ``epe``, ``total``.
    """
    seg, best = segmentation_loss(logits, target, iou_pred, weights)
    chosen = _best(logits, best)
    r_iou = iou_reward(chosen, target)
    p_count = count_penalty(chosen, target, outside)
    p_epe = epe_penalty(chosen, sdf)
    total = seg - weights.iou_reward * r_iou + weights.count * p_count + weights.epe * p_epe
    terms = {k: float(v.detach()) for k, v in
             (("seg", seg), ("iou_reward", r_iou), ("count", p_count), ("epe", p_epe), ("total", total))}
    return total, terms
