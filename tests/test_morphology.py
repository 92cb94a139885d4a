import numpy as np

from segsem_lite.config import RefineConfig
from segsem_lite.morphology import count_regions, refine_mask


def test_fill_holes_and_keep_prompted_component():
    m = np.zeros((30, 30), bool)
    m[5:15, 5:15] = True
    m[9:11, 9:11] = False  # a hole
    m[20:28, 20:28] = True  # another feature
    out = refine_mask(m, prompt_xy=(7.0, 7.0), config=RefineConfig(closing_nm=0, min_speck_nm2=0))
    assert out[10, 10]
    assert not out[24, 24]
    assert out.sum() == 100
    assert m[9, 9] == False  # input untouched  # noqa: E712


def test_specks_removed_by_area_in_nm2():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[16:18, 16:18] = True  # 4 px: 16 nm^2 at 2 nm/px, 4 nm^2 at 1 nm/px
    cfg = RefineConfig(closing_nm=0, min_speck_nm2=10, keep_prompted=False)
    assert refine_mask(m, config=cfg, pixel_size_nm=2.0)[16, 16]
    assert not refine_mask(m, config=cfg, pixel_size_nm=1.0)[16, 16]


def test_closing_bridges_a_one_pixel_gap():
    m = np.zeros((20, 30), bool)
    m[5:15, 3:14] = True
    m[5:15, 15:27] = True  # gap at column 14
    out = refine_mask(m, config=RefineConfig(closing_nm=2, min_speck_nm2=0, keep_prompted=False))
    assert count_regions(m) == 2 and count_regions(out) == 1
    assert out[10, 14]


def test_count_regions_min_size():
    m = np.zeros((10, 10), bool)
    m[1:4, 1:4] = True
    m[8, 8] = True
    assert count_regions(m) == 2
    assert count_regions(m, min_px=2) == 1
    assert count_regions(np.zeros((4, 4), bool)) == 0


def test_empty_mask_stays_empty():
    assert not refine_mask(np.zeros((5, 5), bool), prompt_xy=(2, 2)).any()
