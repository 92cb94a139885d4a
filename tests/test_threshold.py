import numpy as np
import pytest
from skimage.filters import threshold_sauvola

from segsem_lite import SegSEMError
from segsem_lite.config import FallbackConfig
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
    cfg = FallbackConfig(window_nm=9, denoise_sigma_nm=0)
    mask = fallback_mask(img, (31.0, 31.0), config=cfg)
    assert mask[31, 31] and mask.sum() >= 18 * 18
    with pytest.raises(SegSEMError, match=r"prompt \(x=80, y=3\) is outside the image of 64x64 px"):
        fallback_mask(img, (80, 3), config=cfg)


def test_fallback_window_scales_with_pixel_size():
    img = _ring_feature()
    a = fallback_mask(img, (31.0, 31.0), config=FallbackConfig(window_nm=9, denoise_sigma_nm=0), pixel_size_nm=1.0)
    b = fallback_mask(img, (31.0, 31.0), config=FallbackConfig(window_nm=18, denoise_sigma_nm=0), pixel_size_nm=2.0)
    np.testing.assert_array_equal(a, b)
