import json

import gdstk
import numpy as np
import pytest

from segsem_lite.contours import (
    contour_length,
    contours_to_nm,
    extract_contours,
    fill_polygon,
    smooth_compact,
    sobel_edges,
    write_contours_csv,
    write_contours_gds,
    write_contours_json,
)


def test_disk_contour_length_close_to_circumference():
    yy, xx = np.mgrid[:101, :101]
    d = (xx - 50.0) ** 2 + (yy - 50.0) ** 2
    prob = np.clip(30.5 - np.sqrt(d), -1, 1) * 0.5 + 0.5  # anti-aliased disk of radius 30.5
    (c,) = extract_contours(prob)
    assert contour_length(c) == pytest.approx(2 * np.pi * 30.5, rel=0.01)
    r = np.hypot(c[:, 0] - 50, c[:, 1] - 50)
    assert np.abs(r - 30.5).max() < 0.1  # sub-pixel


def test_contours_are_xy_and_closed():
    m = np.zeros((20, 40), bool)
    m[8:12, 5:35] = True  # wide along x
    (c,) = extract_contours(m)
    assert np.ptp(c[:, 0]) > 25 and np.ptp(c[:, 1]) < 6
    assert np.allclose(c[0], c[-1])
    assert c[:, 0].min() == pytest.approx(4.5) and c[:, 1].min() == pytest.approx(7.5)


def test_mask_touching_the_border_gives_a_closed_contour():
    m = np.zeros((10, 10), bool)
    m[:5, :5] = True
    (c,) = extract_contours(m)
    assert np.allclose(c[0], c[-1]) and c[:, 0].min() == pytest.approx(-0.5)


def test_sobel_edges_inner_boundary():
    m = np.zeros((10, 10), bool)
    m[2:8, 2:8] = True
    e = sobel_edges(m)
    assert e[2, 4] and e[7, 4] and not e[4, 4] and not e[1, 4]
    assert e.sum() == 20
    assert not sobel_edges(np.zeros((4, 4), bool)).any()


def test_nm_conversion():
    (c,) = contours_to_nm([np.array([[0.0, 0.0], [1.5, 2.0]])], 2.0)
    np.testing.assert_allclose(c, [[1.0, 1.0], [4.0, 5.0]])


def test_exports_round_trip(tmp_path):
    m = np.zeros((20, 30), bool)
    m[4:10, 6:20] = True
    cs = {"3": extract_contours(m)}
    js = json.loads(write_contours_json(tmp_path / "a.json", cs, stem="img", pixel_size_nm=2.0).read_text())
    assert js["features"]["3"]["contours_px"][0][0] == pytest.approx(list(cs["3"][0][0]))
    assert js["features"]["3"]["contours_nm"][0][0] == pytest.approx(list((cs["3"][0][0] + 0.5) * 2.0))
    lines = write_contours_csv(tmp_path / "a.csv", cs, stem="img", pixel_size_nm=2.0).read_text().splitlines()
    assert lines[0] == "stem,label,contour,point,x_px,y_px,x_nm,y_nm" and len(lines) == len(cs["3"][0]) + 1
    lib = gdstk.read_gds(str(write_contours_gds(tmp_path / "a.gds", cs, stem="img", pixel_size_nm=2.0,
                                                image_height_px=20)))
    (cell,) = lib.cells
    (poly,) = cell.polygons
    assert cell.labels[0].text == "3"
    # bounding box in nm with y flipped: x 6..20 px -> 12..40 nm; rows 4..10 -> y (20-10)*2..(20-4)*2
    (x0, y0), (x1, y1) = poly.bounding_box()
    assert (x0, y0, x1, y1) == pytest.approx((12.0, 20.0, 40.0, 32.0), abs=1.01)
    assert abs(poly.area()) == pytest.approx(m.sum() * 4.0, rel=0.06)
    assert lib.unit == pytest.approx(1e-9)


def test_long_contours_stay_one_gds_polygon(tmp_path):
    yy, xx = np.mgrid[:200, :200]
    disk = (xx - 100) ** 2 + (yy - 100) ** 2 <= 80 ** 2
    cs = {"1": extract_contours(disk)}
    assert len(cs["1"][0]) > 199
    lib = gdstk.read_gds(str(write_contours_gds(tmp_path / "d.gds", cs, stem="d", pixel_size_nm=1.0,
                                                image_height_px=200)))
    assert len(lib.cells[0].polygons) == 1


def _radial_error(contour, centre, radius):
    return float(np.sqrt(np.mean((np.hypot(*(contour - centre).T) - radius) ** 2)))


def test_a_noisy_round_contour_is_smoothed_and_an_l_is_left_alone():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    r = 6.0 + rng.normal(0, 0.4, t.size)  # a contact of 12 px with 0.4 px of edge noise
    noisy = np.c_[20 + r * np.cos(t), 30 + r * np.sin(t)]
    smooth = smooth_compact(noisy, harmonics=2, tolerance_px=1.0)
    assert smooth is not None and np.allclose(smooth[0], smooth[-1])
    assert _radial_error(smooth[:-1], (20, 30), 6.0) < 0.5 * _radial_error(noisy, (20, 30), 6.0)
    # its mask: pixel centres inside, about the disk's area
    area = fill_polygon(smooth[:-1], (60, 60)).sum()
    assert abs(area - np.pi * 36) < 0.1 * np.pi * 36
    ell = np.array([[0, 0], [30, 0], [30, 8], [8, 8], [8, 30], [0, 30]], float)
    assert smooth_compact(ell, harmonics=2, tolerance_px=1.0) is None
    with pytest.raises(ValueError):
        smooth_compact(noisy, harmonics=0)
