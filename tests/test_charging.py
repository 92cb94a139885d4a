"""Charging tails along the scan: fitted from a feature map, removed, and used by the pipeline."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

import segsem_lite as ss
from segsem_lite.charging import fit_scan_tail, remove_scan_tail
from segsem_lite.dataset import Target
from segsem_lite.synth.independent import CONDITIONS, render_independent
from scipy.ndimage import label as ndi_label


def _blocks(size: int = 192) -> np.ndarray:
    f = np.zeros((size, size), bool)
    for r in range(12, size - 30, 44):
        for c in range(10, size - 40, 56):
            f[r:r + 24, c:c + 30] = True
    return f


def _trail(f: np.ndarray, tau: float) -> np.ndarray:
    """The feature map seen through a memory of ``tau`` px along +x (a plain loop, not the library's filter)."""
    a = np.exp(-1.0 / tau)
    out = np.empty(f.shape, float)
    out[:, 0] = f[:, 0]
    for c in range(1, f.shape[1]):
        out[:, c] = a * out[:, c - 1] + (1 - a) * f[:, c]
    return out


def _image(f: np.ndarray, step: float, tail: float, tau: float, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = 0.4 + step * f + tail * _trail(f, tau)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
    return (img + rng.normal(0, noise, f.shape)).astype(np.float32)


def test_a_tail_along_the_scan_is_found_and_one_against_it_is_not():
    f = _blocks()
    img = _image(f, step=0.05, tail=-0.15, tau=9.0, noise=0.01)
    t = fit_scan_tail(img, f)
    assert 6.5 <= t.tau_px <= 13.0
    assert abs(t.step - 0.05) < 0.01 and abs(t.tail + 0.15) < 0.02  # as drawn, from the feature map alone
    assert t.explains()
    # the same image mirrored: its tail runs against the scan, which no charging does
    back = fit_scan_tail(img[:, ::-1].copy(), f[:, ::-1].copy())
    assert not back.explains()
    # blur and edge brightening alone, no tail
    ring = cv2.GaussianBlur((f ^ cv2.erode(f.astype(np.uint8), np.ones((5, 5))).astype(bool)).astype(np.float32),
                            (0, 0), 1.0)
    plain = _image(f, step=0.1, tail=0.0, tau=9.0, noise=0.01) + 0.1 * ring
    assert not fit_scan_tail(plain, f).explains()


def test_too_few_pixels_clear_of_the_edges_give_no_tail():
    f = np.zeros((12, 12), bool)
    f[2:10, 2:10] = True
    img = _image(f, step=0.05, tail=-0.15, tau=9.0, noise=0.01)
    t = fit_scan_tail(img, f)
    assert not t.explains()
    assert t.residual == np.inf  # never "explains better" than another map's fit


def test_removing_the_tail_puts_the_trailing_edges_back():
    f = _blocks()
    img = _image(f, step=0.02, tail=0.12, tau=12.0, noise=0.005)
    t = fit_scan_tail(img, f)
    clean = remove_scan_tail(img, t)

    def iou_at_half_level(im: np.ndarray) -> float:
        lo, hi = np.median(im[~f]), np.median(im[f])
        m = (im > (lo + hi) / 2) if hi > lo else (im < (lo + hi) / 2)
        return float((m & f).sum() / (m | f).sum())

    before, after = iou_at_half_level(img), iou_at_half_level(clean)
    assert after > before + 0.1
    assert after > 0.85
    assert clean.dtype == np.float32 and clean.shape == img.shape


def _targets(instances: np.ndarray, ps: float) -> tuple[list[Target], list[int]]:
    from scipy import ndimage as ndi

    labels = [int(k) for k in np.unique(instances) if k]
    out = []
    for k in labels:
        d = ndi.distance_transform_edt(instances == k)
        y, x = np.unravel_index(d.argmax(), d.shape)
        out.append(Target(stem="t", label=k, prompt_xy=(float(x), float(y)), pixel_size_nm=ps))
    return out, labels


def _mean_iou(results, instances, labels) -> float:
    return float(np.mean([((r.mask & (instances == k)).sum() / (r.mask | (instances == k)).sum())
                          if isinstance(r, ss.SegmentationResult) else 0.0 for r, k in zip(results, labels)]))


def test_pipeline_thresholds_again_without_the_tail():
    # blocks with a step of 0.02 at each edge and 0.1 far from it: the tail pushes the trailing edges out
    f = _blocks(256)
    img = np.clip(_image(f, step=0.02, tail=0.08, tau=10.0, noise=0.02, seed=5) * 255, 0, 255).astype(np.uint8)
    instances, n = ndi_label(f)
    targets, labels = _targets(instances, 1.0)
    on = ss.segment_image(img, targets)
    off = ss.segment_image(img, targets, config=ss.PipelineConfig.from_dict({"fallback.charging_tails": False}))
    assert all(r.scan_tail_px > 0 for r in on)
    assert all(r.scan_tail_px == 0 for r in off)
    assert _mean_iou(on, instances, labels) > _mean_iou(off, instances, labels) + 0.05


def test_a_tail_that_cancels_the_step_far_from_the_edges_is_removed_too():
    # a step of 0.1 at each edge and 0.01 far from it: only the edges show the blocks, and the first pass takes
    # in their leading parts; the tail fitted on those is 19 px, on the next pass's features 9 px (as drawn: 10)
    f = _blocks(256)
    img = np.clip(_image(f, step=0.1, tail=-0.09, tau=10.0, noise=0.02, seed=5) * 255, 0, 255).astype(np.uint8)
    instances, n = ndi_label(f)
    targets, labels = _targets(instances, 1.0)
    on = ss.segment_image(img, targets)
    off = ss.segment_image(img, targets, config=ss.PipelineConfig.from_dict({"fallback.charging_tails": False}))
    assert all(7.0 <= r.scan_tail_px <= 13.0 for r in on)
    assert _mean_iou(off, instances, labels) < 0.75
    assert _mean_iou(on, instances, labels) > 0.9


def test_charging_settings_are_checked():
    with pytest.raises(ss.SegSEMError, match="charging_rounds=0"):
        ss.PipelineConfig.from_dict({"fallback.charging_rounds": 0})
    with pytest.raises(ss.SegSEMError, match="charging_snrs"):
        ss.PipelineConfig.from_dict({"fallback.charging_snrs": [20.0, -1.0]})


@pytest.mark.parametrize("seed", [2, 3])
def test_pipeline_leaves_images_without_a_tail_alone(seed):
    look = replace(CONDITIONS["no_edge_band"], charging=(0.0, 0.0))
    s = render_independent(seed, appearance=look, size=192, pattern="contacts")
    targets, labels = _targets(s.instances, s.pixel_size_nm)
    on = ss.segment_image(s.image, targets)
    off = ss.segment_image(s.image, targets, config=ss.PipelineConfig.from_dict({"fallback.charging_tails": False}))
    assert len(on) == len(off) > 0
    for a, b in zip(on, off):
        assert a.scan_tail_px == 0
        assert np.array_equal(a.mask, b.mask)



def test_edges_are_placed_on_the_image_without_the_tail():
    # blocks whose tail pushes the trailing edges out: placed on the image with the tail, the edges went back
    # into it (0.77, and the first pass's placed edges then hid the tail from its fit); on the image without it,
    # measured 0.89
    f = _blocks(256)
    img = np.clip(_image(f, step=0.02, tail=0.08, tau=10.0, noise=0.02, seed=5) * 255, 0, 255).astype(np.uint8)
    instances, n = ndi_label(f)
    targets, labels = _targets(instances, 1.0)
    on = ss.segment_image(img, targets, config=ss.PipelineConfig.from_dict({"edge.standard": True}))
    assert all(r.scan_tail_px > 0 and r.edge_kind == "step" for r in on)
    assert _mean_iou(on, instances, labels) > 0.85


def test_an_array_with_a_tail_is_placed_on_the_image_without_it():
    # 49 discs of radius 9 px with a tail: the array's mean patch is taken on the image without the tail (before,
    # arrays whose tail was removed were left as thresholded; a mean patch with the tails would carry them)
    size, pitch = 252, 36
    yy, xx = np.mgrid[:size, :size]
    f = np.zeros((size, size), bool)
    for cy in range(pitch // 2, size, pitch):
        for cx in range(pitch // 2, size, pitch):
            f |= np.hypot(xx - cx, yy - cy) <= 9.0
    img = np.clip(_image(f, step=0.1, tail=-0.09, tau=10.0, noise=0.08, seed=2) * 255, 0, 255).astype(np.uint8)
    instances, n = ndi_label(f)
    targets, labels = _targets(instances, 1.0)

    def run(on: bool):
        return ss.segment_image(img, targets, config=ss.PipelineConfig.from_dict(
            {"edge.standard": True, "edge.array_template": on}))

    together, alone = run(True), run(False)
    assert all(r.scan_tail_px > 0 for r in together)
    placed = [i for i, r in enumerate(together) if r.edge_kind == "array"]
    assert len(placed) >= 25  # the inner features: those whose patch leaves the image are left alone
    iou_together = _mean_iou([together[i] for i in placed], instances, [labels[i] for i in placed])
    iou_alone = _mean_iou([alone[i] for i in placed], instances, [labels[i] for i in placed])
    # measured: 0.82 together, 0.76 alone
    assert iou_together > iou_alone + 0.03, (iou_together, iou_alone)
