import numpy as np
import pytest
from skimage.filters import threshold_sauvola

from segsem_lite import SegSEMError, iou
from segsem_lite.threshold import component_at, fallback_mask, sauvola_mask, sauvola_threshold, to_unit_float


def test_sauvola_threshold_matches_scikit_image_inside_the_border():
    rng = np.random.default_rng(3)
    img = rng.random((60, 70)).astype(np.float32)
    ours = sauvola_threshold(img, window_px=15, k=0.2, r=0.5)
    ref = threshold_sauvola(img.astype(np.float64), window_size=15, k=0.2, r=0.5)
    np.testing.assert_allclose(ours[8:-8, 8:-8], ref[8:-8, 8:-8], atol=1e-4)


def test_sauvola_threshold_exact_on_flat_image():
    img = np.full((9, 9), 0.4, np.float32)
    # s = 0: T = m * (1 - k)
    assert np.allclose(sauvola_threshold(img, window_px=3, k=0.25, r=0.5), 0.4 * 0.75)


def test_to_unit_float_scales_by_dtype():
    assert to_unit_float(np.array([[255]], np.uint8))[0, 0] == 1.0
    assert to_unit_float(np.array([[65535]], np.uint16))[0, 0] == 1.0
    with pytest.raises(SegSEMError, match="2-D"):
        to_unit_float(np.zeros((2, 2, 3)))


def _ring_feature(bright_inside=False):
    """A dark square bounded by a bright 2-px ring, as a SEM feature with edge effect."""
    img = np.full((64, 64), 60, np.uint8)
    img[20:44, 20:44] = 220
    img[22:42, 22:42] = 120 if bright_inside else 60
    return img


def test_polarity_dark_takes_the_region_inside_the_bright_edge():
    m = sauvola_mask(_ring_feature(), window_nm=9, k=0.2, polarity="dark")
    comp = component_at(m, (31, 31))
    assert comp[31, 31] and not comp[21, 21] and not comp[5, 5]
    assert comp[23:41, 23:41].all()


def test_polarity_bright_keeps_the_ring_and_drops_its_dark_flanks():
    m = sauvola_mask(_ring_feature(), window_nm=9, k=0.2, polarity="bright")
    assert m[20, 20:44].all() and m[21, 21:43].all()
    # next to the ring the window sees it: the dark sides fall below the threshold
    assert not m[18, 30] and not m[23, 30]


def test_sauvola_mask_rejects_unknown_polarity():
    with pytest.raises(SegSEMError, match="polarity"):
        sauvola_mask(_ring_feature(), polarity="auto")


def test_component_at_searches_nearest_within_radius():
    m = np.zeros((10, 10), bool)
    m[2:4, 2:4] = True
    m[7:9, 7:9] = True
    assert component_at(m, (2.0, 2.0))[3, 3]
    near = component_at(m, (5.0, 2.0), search_radius_px=3)  # x=5, y=2: nearest is the first square
    assert near[2, 2] and not near[8, 8]
    assert not component_at(m, (5.0, 5.5), search_radius_px=1).any()


def test_fallback_mask_on_a_feature_and_bad_prompt():
    img = _ring_feature()
    mask = fallback_mask(img, (31.0, 31.0))
    assert mask[31, 31] and mask.sum() >= 18 * 18
    with pytest.raises(SegSEMError, match=r"prompt \(x=80, y=3\) is outside the image of 64x64 px"):
        fallback_mask(img, (80, 3))
    with pytest.raises(SegSEMError, match="tone='grey'"):
        fallback_mask(img, (31.0, 31.0), tone="grey")


def test_edge_ring_bounds_the_feature():
    # the ring is rows/cols 20-21 and 42-43: the feature ends at it, not beyond, whatever the tone found
    mask = fallback_mask(_ring_feature(), (31.0, 31.0))
    rows = np.flatnonzero(mask[:, 31])
    assert 20 <= rows.min() <= 23 and 40 <= rows.max() <= 43 and len(rows) == rows.max() - rows.min() + 1


def _disk_image(bright: bool, radius: float = 12.0, noise: float = 6.0, seed: int = 0) -> tuple:
    yy, xx = np.mgrid[0:96, 0:96]
    inside = np.hypot(yy - 48, xx - 48) <= radius
    img = np.where(inside, 170 if bright else 70, 120).astype(float)
    img += np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), inside


@pytest.mark.parametrize("bright", [True, False])
def test_fallback_finds_both_tones_without_being_told(bright):
    img, truth = _disk_image(bright)
    mask = fallback_mask(img, (48.0, 48.0))
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.85
    # told the wrong tone, the disk is not what comes back
    wrong = fallback_mask(img, (48.0, 48.0), tone="dark" if bright else "bright")
    assert not wrong.any() or (wrong & truth).sum() / (wrong | truth).sum() < 0.5


def test_fallback_scale_free_same_feature_at_two_magnifications():
    small, t_small = _disk_image(True, radius=8.0, noise=3.0)
    big = np.kron(small, np.ones((3, 3), np.uint8))
    m_small = fallback_mask(small, (48.0, 48.0))
    m_big = fallback_mask(big, (145.0, 145.0))
    assert abs(m_big.sum() / 9.0 - m_small.sum()) < 0.15 * m_small.sum()


def test_fallback_on_pure_noise_finds_nothing():
    false = 0
    for seed in range(10):
        for shape, noise in (((80, 80), 10), ((256, 256), 25), ((128, 200), 3)):
            img = np.random.default_rng(seed).normal(120, noise, shape).clip(0, 255).astype(np.uint8)
            false += fallback_mask(img, (shape[1] / 2, shape[0] / 2)).any()
    assert false <= 1, f"{false} of 30 pure-noise images gave a feature"
    assert not fallback_mask(np.zeros((40, 40), np.uint8), (20.0, 20.0)).any()


def _line_across_a_large_image():
    from segsem_lite.dataset import interior_point
    from segsem_lite.synth.independent import Appearance, render_independent

    s = render_independent(5, appearance=Appearance(charging=(0.0, 0.0), drift=(0.0, 0.0)), size=1024,
                           pattern="grating", tone="line", feature_px=40)
    labels = [lab for lab in range(1, s.instances.max() + 1) if (s.instances == lab).sum() > 20000]
    truth = s.instances == labels[len(labels) // 2]
    return s.image, truth, interior_point(truth)


def test_large_crops_grow_to_the_whole_line_and_sweep_at_reduced_size(monkeypatch):
    # a line across a 1024 px image grows the crop to the whole image (however many doublings that takes): the
    # sweep runs on a half-size copy and the boundary is decided at full size; that loses nothing against
    # sweeping at full size
    from segsem_lite import threshold

    image, truth, prompt = _line_across_a_large_image()
    calls, original = [], threshold._full_resolution
    monkeypatch.setattr(threshold, "_full_resolution", lambda *a, **k: calls.append(1) or original(*a, **k))
    reduced = fallback_mask(image, prompt)
    assert calls, "the reduced sweep was used"
    cols = np.flatnonzero(reduced.any(axis=0))
    assert cols[0] == 0 and cols[-1] == image.shape[1] - 1, "the mask runs the whole length of the line"
    monkeypatch.setattr(threshold, "_LARGE_CROP", 10**6)
    full = fallback_mask(image, prompt)
    assert iou(reduced, truth) >= iou(full, truth) - 0.02


@pytest.mark.xfail(strict=True, reason="issue #14: on this line (an edge band inside the resist) the full-size sweep "
                                       "puts the boundary inside the band (IoU 0.56 against the truth, the reduced "
                                       "sweep 0.79), so the two disagree")
def test_large_crops_swept_at_reduced_size_agree_with_full_size(monkeypatch):
    from segsem_lite import threshold

    image, _, prompt = _line_across_a_large_image()
    reduced = fallback_mask(image, prompt)
    monkeypatch.setattr(threshold, "_LARGE_CROP", 10**6)
    full = fallback_mask(image, prompt)
    assert reduced.sum() > 10000 and (reduced & full).sum() / (reduced | full).sum() > 0.9
