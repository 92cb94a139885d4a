"""Metrology against shapes of known size, and roughness with a known noise floor."""

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon

from segsem_lite.contours import extract_contours
from segsem_lite.metrology import FeatureMetrics, measure_feature, measure_field, roughness


def _measure(mask, **kw):
    image = np.where(mask, 200, 60).astype(np.uint8)
    return measure_feature(image, mask, extract_contours(mask), pixel_size_nm=kw.pop("ps", 1.0), **kw)


def test_a_vertical_line_has_its_width_and_no_spread():
    mask = np.zeros((200, 120), bool)
    mask[20:180, 40:61] = True  # 21 px wide, pixel centres 40..60
    m = _measure(mask, ps=2.0)
    assert m.kind == "line" and m.tone == "bright"
    assert m.cd_px == pytest.approx(21.0, abs=0.6) and m.cd_nm == pytest.approx(2 * m.cd_px)
    assert m.cd_3sigma_nm < 0.5


def test_a_tilted_line_is_measured_across_not_along_the_scan():
    mask = np.zeros((240, 240), bool)
    t = np.deg2rad(20)
    cx, cy, half_l, half_w = 120, 120, 100, 9
    d, n = np.array([np.sin(t), np.cos(t)]), np.array([np.cos(t), -np.sin(t)])
    corners = [np.array([cx, cy]) + a * half_l * d + b * half_w * n for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    pts = np.array(corners)
    rr, cc = polygon(pts[:, 1], pts[:, 0], mask.shape)
    mask[rr, cc] = True
    assert _measure(mask).cd_px == pytest.approx(18.0, abs=0.8)


def test_a_bowed_line_with_a_bulge_is_a_line_and_an_l_is_not():
    # a line crossing the field, bowed by 4 px over its length and 2 px wider over a few rows: it fills its
    # rectangle less than 0.75, yet it is a line; an L of the same arm is not (its foot is much wider)
    mask = np.zeros((300, 120), bool)
    for r in range(300):
        c = 50 + int(round(4 * np.sin(np.pi * r / 299)))
        mask[r, c:c + 14 + (2 if 100 <= r < 110 else 0)] = True
    m = _measure(mask, touches_border=True)
    assert m.kind == "line" and m.cd_px == pytest.approx(14.1, abs=0.3)
    ell = np.zeros((300, 120), bool)
    ell[20:280, 40:56] = True
    ell[250:280, 40:100] = True
    assert _measure(ell).kind == "shape"


def test_holes_pillars_and_shapes():
    hole = np.zeros((100, 100), bool)
    hole[disk((50, 50), 15)] = True
    image = np.where(hole, 40, 180).astype(np.uint8)
    m = measure_feature(image, hole, extract_contours(hole), pixel_size_nm=1.0)
    assert m.kind == "hole" and m.cd_px == pytest.approx(30.0, rel=0.03) and m.ellipticity < 0.05
    oval = np.zeros((100, 100), bool)
    oval[ellipse(50, 50, 12, 20)] = True
    m = _measure(oval)
    assert m.kind == "pillar" and m.ellipticity == pytest.approx(0.4, abs=0.05)
    ell = np.zeros((100, 100), bool)
    ell[20:80, 20:32] = True
    ell[68:80, 20:80] = True
    m = _measure(ell)
    assert m.kind == "shape" and m.cd_px == pytest.approx(12.0, abs=1.0)
    cut = np.zeros((100, 100), bool)
    cut[disk((0, 50), 15)] = True
    assert _measure(cut, touches_border=True).kind == "partial"


def _line(rng, n, left, width, rough, noise):
    pos = np.arange(n, dtype=float)
    smooth = np.convolve(rng.normal(0, 1, n + 40), np.ones(20) / np.sqrt(20), "same")[20:20 + n] * rough
    lo = left + smooth + rng.normal(0, noise, n)
    hi = left + width + np.roll(smooth, 7) + rng.normal(0, noise, n)
    return FeatureMetrics("line", "bright", (left + width / 2, n / 2), 0, 0, width, width, 0, None, (pos, lo, hi))


def test_roughness_without_the_noise_floor_recovers_the_true_edge_roughness():
    rng = np.random.default_rng(0)
    lines = [_line(rng, 1024, 40 * i, 15, rough=1.0, noise=1.0) for i in range(20)]
    r = roughness(lines, pixel_size_nm=1.0)
    assert r.n_edges == 40 and r.length == 1024
    truth = 3 * 1.0  # the smoothed walk has unit standard deviation
    measured = 3 * np.sqrt(2.0)  # roughness and white noise add in quadrature
    assert r.ler_3sigma_nm == pytest.approx(measured, rel=0.1)
    assert r.ler_unbiased_3sigma_nm == pytest.approx(truth, rel=0.12)
    assert r.floor_ler > 0 and r.psd_ler[1:10].mean() > 10 * r.floor_ler


def test_field_pitch_cd_and_counts():
    rng = np.random.default_rng(1)
    lines = [_line(rng, 256, 31.0 * i + 3, 15, rough=0.5, noise=0.2) for i in range(12) if i != 5]  # one missing
    f = measure_field(lines, pixel_size_nm=0.5)
    assert f.kind == "line" and f.counts == {"line": 11}
    assert f.pitch_nm == pytest.approx(15.5, rel=0.01)
    assert f.cd_mean_nm == pytest.approx(15.0) and f.roughness is not None
