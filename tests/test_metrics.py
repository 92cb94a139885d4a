import numpy as np
import pytest

from segsem_lite.contours import extract_contours
from segsem_lite.metrics import average_exposure, edge_placement_error, iou, mask_scores


def test_scores_exact_on_hand_built_masks():
    pred = np.zeros((4, 4), bool)
    pred[:2] = True  # 8 px
    truth = np.zeros((4, 4), bool)
    truth[:, :2] = True  # 8 px, overlap 4
    s = mask_scores(pred, truth)
    assert s.iou == pytest.approx(4 / 12)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(0.5)


def test_scores_invariants(disk):
    assert iou(disk, disk) == 1.0
    assert mask_scores(disk, ~disk).iou == 0.0
    empty = np.zeros_like(disk)
    assert mask_scores(empty, empty).iou == 1.0
    assert mask_scores(empty, disk).precision == 0.0
    assert mask_scores(disk, empty).recall == 0.0


def test_scores_reject_shape_mismatch():
    with pytest.raises(ValueError, match="shapes"):
        mask_scores(np.zeros((3, 3)), np.zeros((3, 4)))


def test_epe_of_a_shifted_edge_is_the_shift():
    truth = [np.array([[0.0, -5.0], [0.0, 15.0]])]
    pred = [np.column_stack([np.full(11, 2.0), np.arange(11.0)])]
    e = edge_placement_error(pred, truth, pixel_size_nm=0.5)
    assert e.mean_px == pytest.approx(2.0, abs=1e-9)
    assert e.max_px == pytest.approx(2.0, abs=1e-9)
    assert e.mean_nm == pytest.approx(1.0)


def test_epe_measures_predicted_vertices_against_the_truth_polyline():
    truth = [np.array([[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], float)]
    pred = [truth[0] + [2.0, 0.0]]  # vertices 0, 2, 2, 0, 0 px off
    e = edge_placement_error(pred, truth)
    assert e.mean_px == pytest.approx(0.8, abs=0.02)
    assert e.max_px == pytest.approx(2.0, abs=0.02)


def test_epe_zero_for_identical_contours(disk):
    cs = extract_contours(disk)
    e = edge_placement_error(cs, cs)
    assert e.mean_px < 1e-9 and e.max_px < 1e-9 and e.n_points == sum(len(c) for c in cs)


def test_epe_grown_disk_is_one_pixel(disk):
    yy, xx = np.mgrid[:32, :40]
    bigger = (xx - 20) ** 2 + (yy - 16) ** 2 <= 11 ** 2
    e = edge_placement_error(extract_contours(bigger), extract_contours(disk))
    assert 0.6 < e.mean_px < 1.4


def test_epe_without_contours_is_infinite():
    assert np.isinf(edge_placement_error([], [np.zeros((3, 2))]).mean_px)


def test_average_exposure_exact():
    img = np.zeros((3, 3), np.uint8)
    img[1, 1] = 4  # the only interior Laplacian value is -16
    assert average_exposure(img) == 0.0  # one value: variance 0
    img = np.zeros((3, 4), np.uint8)
    img[1, 1] = 4  # interior Laplacians: -16 and 4
    assert average_exposure(img) == pytest.approx(np.var([-16.0, 4.0]))


def test_average_exposure_rises_with_noise_and_scales_16_bit():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64), 100, np.uint8)
    noisy = np.clip(flat + rng.normal(0, 10, flat.shape), 0, 255).astype(np.uint8)
    assert average_exposure(flat) == 0.0
    assert average_exposure(noisy) > 1000
    assert average_exposure(noisy.astype(np.uint16) * 257) == pytest.approx(average_exposure(noisy))


def test_diagnose_mask_names_failures():
    from scipy import ndimage as ndi

    from segsem_lite.metrics import diagnose_mask

    truth = np.zeros((60, 60), bool)
    truth[15:45, 15:45] = True
    assert diagnose_mask(truth, truth) == "ok"
    assert diagnose_mask(np.zeros_like(truth), truth) == "miss"
    ring = truth & ~ndi.binary_erosion(truth, iterations=3)
    assert diagnose_mask(ring, truth) == "edge-ring"
    leak = np.ones_like(truth)
    assert diagnose_mask(leak, truth) == "leak"
    two = np.zeros_like(truth)
    two[15:25, 15:45] = True
    two[35:45, 15:45] = True
    assert diagnose_mask(two, truth) == "fragments"
    half = np.zeros_like(truth)
    half[15:45, 15:30] = True
    assert diagnose_mask(half, truth) == "partial"


def test_calibration_reliability_table():
    from segsem_lite.batch import calibration

    pred = np.array([0.95, 0.92, 0.85, 0.6, np.nan])
    true = np.array([0.97, 0.90, 0.70, 0.65, 0.9])
    c = calibration(pred, true)
    assert c["n"] == 4 and c["mean_abs_error"] == pytest.approx((0.02 + 0.02 + 0.15 + 0.05) / 4)
    assert [(b["from"], b["n"]) for b in c["bins"]] == [(0.5, 1), (0.8, 1), (0.9, 1), (0.95, 1)]
    assert c["bins"][1]["true"] == pytest.approx(0.70) and c["correlation"] > 0.8
    assert calibration([], []) == {"n": 0}
