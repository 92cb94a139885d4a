import numpy as np
import pytest
import torch

from segsem_lite.sam.losses import (
    count_penalty,
    dice_loss,
    epe_penalty,
    focal_loss,
    iou_reward,
    outside_region,
    segmentation_loss,
    segsem_loss,
    signed_distance,
)


def _square(shift=0, size=48):
    m = np.zeros((size, size), bool)
    m[14 + shift:34 + shift, 14:34] = True
    return m


TRUTH = _square()
T = torch.from_numpy(TRUTH.astype(np.float32))[None]
SDF = torch.from_numpy(signed_distance(TRUTH))[None]
OUT = torch.from_numpy(outside_region(TRUTH))[None]


def _logits(mask, scale=8.0):
    return torch.from_numpy(np.where(mask, scale, -scale).astype(np.float32))[None]


def _wrong():
    m = _square(shift=4)
    m[2:6, 2:6] = True  # a spurious fragment
    return m


TERMS = {
    "focal": lambda lg: focal_loss(lg[:, None], T).mean(),
    "dice": lambda lg: dice_loss(lg[:, None], T).mean(),
    "neg_iou_reward": lambda lg: -iou_reward(lg, T),
    "count": lambda lg: count_penalty(lg, T, OUT),
    "epe": lambda lg: epe_penalty(lg, SDF),
}


@pytest.mark.parametrize("name", list(TERMS))
def test_each_term_is_minimal_at_the_truth(name):
    term = TERMS[name]
    at_truth = float(term(_logits(TRUTH)))
    for wrong in (_wrong(), ~TRUTH, np.zeros_like(TRUTH), _square(shift=1)):
        if name == "count" and not (wrong & (OUT[0].numpy() > 0)).any():
            continue  # the count penalty only sees mass away from the target
        assert float(term(_logits(wrong))) > at_truth


@pytest.mark.parametrize("name", list(TERMS))
def test_gradient_moves_a_wrong_prediction_toward_the_truth(name):
    term = TERMS[name]
    logits = _logits(_wrong(), scale=2.0).requires_grad_(True)
    before = float(term(logits).detach())
    term(logits).backward()
    with torch.no_grad():
        stepped = logits - 50.0 * logits.grad / logits.grad.abs().max()
    assert float(term(stepped)) < before
    # and where it moved, it moved toward the truth: up inside, down outside
    g = -logits.grad[0].numpy()
    moved = np.abs(g) > 1e-9
    assert moved.any()
    assert np.all((g[moved] > 0) == TRUTH[moved])


def test_epe_penalty_in_pixels_for_a_shifted_edge():
    # a 20 px wide square shifted by 2 px: two edges of 20 px off by 2 px, cost 2 * 20 * (1 + 2) / perimeter
    val = float(epe_penalty(_logits(_square(shift=2), scale=50.0), SDF))
    perimeter = (np.abs(signed_distance(TRUTH)) <= 1).sum() / 2
    assert val == pytest.approx(2 * 20 * (1 + 2) / perimeter, rel=0.05)


def test_segmentation_loss_picks_the_best_candidate_and_supervises_iou():
    cands = torch.stack([_logits(_wrong())[0], _logits(TRUTH)[0], _logits(~TRUTH)[0]])[None]
    perfect_iou = torch.tensor([[0.3, 1.0, 0.0]])
    loss_good, best = segmentation_loss(cands, T, perfect_iou)
    loss_bad, _ = segmentation_loss(cands, T, torch.tensor([[1.0, 0.0, 1.0]]))
    assert int(best[0]) == 1 and float(loss_good) < float(loss_bad)


def test_total_loss_signs_reward_overlap_and_punish_fragments():
    iou_pred = torch.tensor([[1.0, 1.0, 1.0]])
    good, terms = segsem_loss(_logits(TRUTH)[:, None].repeat(1, 3, 1, 1), T, iou_pred, sdf=SDF, outside=OUT)
    bad, terms_bad = segsem_loss(_logits(_wrong())[:, None].repeat(1, 3, 1, 1), T, iou_pred, sdf=SDF, outside=OUT)
    assert float(good) < float(bad)
    assert terms["iou_reward"] > terms_bad["iou_reward"] and terms["count"] < terms_bad["count"]
    assert terms["total"] == pytest.approx(terms["seg"] - 0.5 * terms["iou_reward"] + 0.5 * terms["count"]
                                           + 0.01 * terms["epe"], rel=1e-5)
