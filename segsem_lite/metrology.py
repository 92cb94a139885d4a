"""Metrology from extracted features: CD, pitch, CD uniformity and line roughness, in nm.

Per feature (:func:`measure_feature`): its kind (``line``, ``hole``, ``pillar`` or ``shape``),
centroid, area and CD. Lines: the mean width across the line and its 3-sigma along it; holes
and pillars: the area-equivalent diameter and the ellipticity; 2-D shapes: the median local
width along the medial axis.

Per field (:func:`measure_field`): counts, CD mean and 3-sigma (CDU), pitch, and for lines
the line-edge and line-width roughness (LER, LWR) as 3-sigma, both as measured and without
the noise floor of their power spectral density: white image noise adds a flat floor to
the PSD at high frequencies, and subtracting it gives the unbiased roughness that
MetroLER and SMILE report.

References
----------
C. A. Mack, "Reducing roughness in extreme ultraviolet lithography", J. Micro/Nanolith.
MEMS MOEMS 17(4), 041006, 2018 (unbiased roughness from the PSD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .coords import polygon_area
from .errors import SegSEMError

__all__ = ["FeatureMetrics", "FieldMetrics", "Roughness", "measure_feature", "measure_field", "roughness",
           "line_edges"]

#: A feature whose minimum-area rectangle is this many times longer than wide, and fills it, is a line.
LINE_ASPECT = 4.0
#: A feature at most this elongated, filling at least this share of its rectangle (an ellipse fills pi/4), is a
#: hole or a pillar.
COMPACT_ASPECT = 2.0
COMPACT_FILL = 0.65


@dataclass(frozen=True)
class FeatureMetrics:
    """Measurements of one feature.

    Attributes
    ----------
    kind : {"line", "hole", "pillar", "shape", "partial"}
        ``partial``: cut by the field's border and not a line across it (its CD is the
        median local width of what shows; left out of the field's statistics).
    tone : {"bright", "dark"}
        Brighter or darker than the ring around it.
    centroid_xy : (float, float)
        px.
    area_px, area_nm2 : float
    cd_nm, cd_px : float
        Lines: mean width across; holes and pillars: area-equivalent diameter; shapes and
        partial features: median local width.
    cd_3sigma_nm : float or None
        Lines: 3-sigma of the width along the line; None otherwise.
    ellipticity : float or None
        Holes and pillars: 1 - minor/major axis (0 for a circle).
    edges : tuple or None
        Lines: ``(position, left, right)`` arrays, px: the scan coordinate along the line
        and the two edges across it.
    """

    kind: str
    tone: str
    centroid_xy: tuple[float, float]
    area_px: float
    area_nm2: float
    cd_nm: float
    cd_px: float
    cd_3sigma_nm: float | None
    ellipticity: float | None
    edges: tuple | None = field(default=None, repr=False)


def _shape(mask: np.ndarray) -> tuple[float, float, float]:
    """Long side, short side and fill of the minimum-area rectangle around a mask's pixels."""
    pts = cv2.findNonZero(mask.astype(np.uint8))
    (_, _), (w, h), _ = cv2.minAreaRect(pts)
    long, short = max(w, h) + 1.0, min(w, h) + 1.0
    return long, short, float(mask.sum()) / (long * short)


#: A feature is nowhere much wider than usual when at most FOOT_SHARE of its length is wider than its median
#: width by more than FOOT_WIDTH of it (its rounded ends, narrower, do not count).
FOOT_WIDTH = 0.2
FOOT_SHARE = 0.05


def _no_foot(contour: np.ndarray, vertical: bool) -> bool:
    """Whether a feature's width along its length, ends included, stays near its median nearly everywhere."""
    _, left, right = line_edges(contour, vertical=vertical)
    width = right - left
    med = float(np.median(width)) if width.size else 0.0
    return med > 0 and float(np.mean(width > (1.0 + FOOT_WIDTH) * med)) <= FOOT_SHARE


def line_edges(contour: np.ndarray, *, vertical: bool, trim: float = 0.0):
    """Both edges of a line where each scan line crosses its contour.

    Parameters
    ----------
    contour : (K, 2) ndarray
        Closed outer contour, points (x, y) px.
    vertical : bool
        The line runs along y (scan rows); otherwise along x (scan columns).
    trim : float
        Leave out this many px at each end of the line (its rounded ends).

    Returns
    -------
    position, left, right : 1-D ndarrays
        Scan coordinate and the smallest and largest crossing across it, px.
    """
    pts = np.asarray(contour, float)
    along, across = (pts[:, 1], pts[:, 0]) if vertical else (pts[:, 0], pts[:, 1])
    a0, a1 = along, np.roll(along, -1)
    c0, c1 = across, np.roll(across, -1)
    lo = np.ceil(along.min() + trim)
    hi = np.floor(along.max() - trim)
    if hi < lo:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    pos = np.arange(lo, hi + 1)
    seg = a0 != a1
    a0, a1, c0, c1 = a0[seg], a1[seg], c0[seg], c1[seg]
    t = (pos[:, None] - a0[None]) / (a1 - a0)[None]
    hit = (t >= 0) & (t < 1)
    x = c0[None] + t * (c1 - c0)[None]
    left = np.where(hit, x, np.inf).min(axis=1)
    right = np.where(hit, x, -np.inf).max(axis=1)
    ok = np.isfinite(left) & np.isfinite(right) & (right > left)
    return pos[ok], left[ok], right[ok]


def _tone(image: np.ndarray, mask: np.ndarray) -> str:
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
    inside = image[cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)]
    if inside.size == 0:
        inside = image[mask]
    return "bright" if ring.any() and float(inside.mean()) > float(image[ring].mean()) else "dark"


def measure_feature(image: np.ndarray, mask: np.ndarray, contours: list, *, pixel_size_nm: float,
                    touches_border: bool = False) -> FeatureMetrics:
    """Measure one extracted feature.

    Parameters
    ----------
    image : (M, N) ndarray
        The SEM image (for the tone).
    mask : (M, N) bool ndarray
        The feature's final mask.
    contours : list of (K, 2) ndarray
        Its sub-pixel contours (x, y) px, outer first.
    pixel_size_nm : float
    touches_border : bool
        A line cut by the field's edge keeps its ends (they are the frame, not rounded).

    Returns
    -------
    FeatureMetrics

    Raises
    ------
    SegSEMError
        For an empty mask.
    """
    mask = np.asarray(mask, bool)
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not ys.size:
        raise SegSEMError("empty mask: nothing to measure")
    # work on the feature's box with a margin (the tone reads a ring around it)
    y0, x0 = max(0, ys[0] - 4), max(0, xs[0] - 4)
    y1, x1 = min(mask.shape[0], ys[-1] + 5), min(mask.shape[1], xs[-1] + 5)
    field_shape = mask.shape
    mask, image = mask[y0:y1, x0:x1], np.asarray(image)[y0:y1, x0:x1]
    ps = float(pixel_size_nm)
    rows, cols = np.nonzero(mask)
    cy, cx = rows.mean() + y0, cols.mean() + x0
    outer = np.asarray(contours[0], float) if contours else None
    if outer is not None and len(outer) >= 3:
        area = polygon_area(outer) - sum(polygon_area(inner) for inner in contours[1:])  # minus holes inside it
    else:
        area = float(mask.sum())
    tone = _tone(np.asarray(image, np.float32), mask)
    long, short, fill = _shape(mask)
    aspect = long / short
    dy, dx = np.ptp(rows) + 1, np.ptp(cols) + 1
    vertical = dy >= dx
    # a line cut by the border must still cross a good part of the field; a short cut piece is partial
    crosses = long >= 0.25 * (field_shape[0] if vertical else field_shape[1])
    if aspect >= LINE_ASPECT and outer is not None and (crosses or not touches_border):
        trim = 0.0 if touches_border else short
        pos, left, right = line_edges(outer, vertical=vertical, trim=trim)
        # it fills its rectangle, or nowhere along it is it much wider than usual (a rough or slightly bent line
        # fills its rectangle less; an L or a T has a foot much wider than its arm)
        if pos.size >= 4 and (fill >= 0.75 or _no_foot(outer, vertical)):
            centre = 0.5 * (left + right)
            slope = np.polyfit(pos, centre, 1)[0]
            width = (right - left) / np.sqrt(1.0 + slope * slope)  # across the line, not along the scan
            return FeatureMetrics("line", tone, (float(cx), float(cy)), float(area), float(area) * ps * ps,
                                  float(width.mean() * ps), float(width.mean()), float(3 * width.std() * ps), None,
                                  (pos, left, right))
    if aspect <= COMPACT_ASPECT and fill >= COMPACT_FILL and not touches_border:
        d = 2.0 * np.sqrt(area / np.pi)
        cov = np.cov(np.vstack([cols, rows])) if rows.size > 2 else np.eye(2)
        ev = np.sort(np.linalg.eigvalsh(cov))
        ell = float(1.0 - np.sqrt(max(ev[0], 0.0) / ev[1])) if ev[1] > 0 else 0.0
        kind = "hole" if tone == "dark" else "pillar"
        return FeatureMetrics(kind, tone, (float(cx), float(cy)), float(area), float(area) * ps * ps,
                              float(d * ps), float(d), None, ell)
    from skimage.morphology import skeletonize

    padded = np.pad(mask, 1)
    dist = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    widths = 2.0 * dist[skeletonize(padded)] - 1.0
    # leave out the medial axis's branches into corners and ends, where it is narrower than the body
    body = widths[widths >= 0.5 * np.percentile(widths, 90)] if widths.size else np.array([short])
    cd = float(np.median(body))
    return FeatureMetrics("partial" if touches_border else "shape", tone, (float(cx), float(cy)), float(area), float(area) * ps * ps,
                          cd * ps, cd, None, None)


@dataclass(frozen=True)
class Roughness:
    """Line-edge and line-width roughness of a field's lines, from their PSD.

    Attributes
    ----------
    ler_3sigma_nm, lwr_3sigma_nm : float
        As measured (3 standard deviations of the edge residuals about a straight line,
        and of the width).
    ler_unbiased_3sigma_nm, lwr_unbiased_3sigma_nm : float
        With the PSD's noise floor removed.
    frequency_per_nm : (F,) ndarray
        Spatial frequencies of the one-sided PSDs.
    psd_ler, psd_lwr : (F,) ndarray
        Mean PSD over edges (lines), nm^3 (variance per unit frequency).
    floor_ler, floor_lwr : float
        Their noise floors, same unit: the mean over the top quarter of frequencies.
    n_edges, length : int
        Edges used and their common length in samples.
    """

    ler_3sigma_nm: float
    lwr_3sigma_nm: float
    ler_unbiased_3sigma_nm: float
    lwr_unbiased_3sigma_nm: float
    frequency_per_nm: np.ndarray
    psd_ler: np.ndarray
    psd_lwr: np.ndarray
    floor_ler: float
    floor_lwr: float
    n_edges: int
    length: int


def _psd(series: np.ndarray, ps: float):
    """Mean one-sided PSD (nm^3) of rows of residuals sampled every ``ps`` nm, their mean variance, and the
    white-noise variance that the PSD's high-frequency floor stands for."""
    n = series.shape[1]
    spec = np.abs(np.fft.rfft(series * ps, axis=1)) ** 2 / n  # two-sided power per bin; mean over bins = variance
    mean = spec.mean(axis=0)
    freq = np.fft.rfftfreq(n, d=ps)
    top = mean[freq >= 0.75 * freq[-1]]
    floor_bin = float(top.mean()) if top.size else 0.0
    variance = float((series * ps).var(axis=1).mean())
    one_sided = mean * ps  # variance per unit frequency (x2 for the negative frequencies, /2 per side)
    one_sided[1:] *= 2.0
    if n % 2 == 0:
        one_sided[-1] /= 2.0
    return freq, one_sided, variance, floor_bin, floor_bin * ps * 2.0


def roughness(lines: list[FeatureMetrics], *, pixel_size_nm: float, min_length: int = 32) -> Roughness | None:
    """LER and LWR of the lines of one field, as measured and unbiased.

    Parameters
    ----------
    lines : list of FeatureMetrics
        Features of kind ``line`` (others are ignored).
    pixel_size_nm : float
        The sampling step along the lines.
    min_length : int
        Lines sampled at fewer points are left out.

    Returns
    -------
    Roughness or None
        None when no line is long enough.

    Notes
    -----
    Edges are cut to a common length (the shortest of those at least 80 % as long as the
    longest), each edge's residual is taken about its own straight-line fit, and widths
    about their mean. With ``P_k = |FFT(r)_k|^2 / N`` the mean of ``P_k`` over all bins is
    the variance of ``r``; white noise of variance ``s^2`` gives ``P_k = s^2`` at every bin,
    so the floor read at high frequencies is the noise variance, and the unbiased
    variance is the measured one minus it (never below zero).
    """
    edges = [m.edges for m in lines if m.kind == "line" and m.edges is not None and len(m.edges[0]) >= min_length]
    if not edges:
        return None
    longest = max(len(e[0]) for e in edges)
    edges = [e for e in edges if len(e[0]) >= 0.8 * longest]
    n = min(len(e[0]) for e in edges)
    ps = float(pixel_size_nm)
    ler, lwr = [], []
    for pos, left, right in edges:
        pos, left, right = pos[:n], left[:n], right[:n]
        for edge in (left, right):
            ler.append(edge - np.polyval(np.polyfit(pos, edge, 1), pos))
        width = right - left
        lwr.append(width - width.mean())
    f, p_ler, v_ler, n_ler, floor_ler = _psd(np.asarray(ler), ps)
    _, p_lwr, v_lwr, n_lwr, floor_lwr = _psd(np.asarray(lwr), ps)
    return Roughness(
        ler_3sigma_nm=3 * np.sqrt(v_ler), lwr_3sigma_nm=3 * np.sqrt(v_lwr),
        ler_unbiased_3sigma_nm=3 * np.sqrt(max(v_ler - n_ler, 0.0)),
        lwr_unbiased_3sigma_nm=3 * np.sqrt(max(v_lwr - n_lwr, 0.0)),
        frequency_per_nm=f, psd_ler=p_ler, psd_lwr=p_lwr, floor_ler=floor_ler, floor_lwr=floor_lwr,
        n_edges=len(ler), length=n)


@dataclass(frozen=True)
class FieldMetrics:
    """Measurements of one field (one image).

    Attributes
    ----------
    counts : dict of str to int
        Features per kind.
    kind : str or None
        The most common kind (the pattern).
    cd_mean_nm, cd_3sigma_nm : float or None
        Mean CD of the features of that kind and its 3-sigma over them (CD uniformity);
        holes and pillars cut by the border are left out, lines are kept.
    cd_median_nm : float or None
        Median CD over every feature that is not ``partial`` (whatever its kind): what two
        images of one layout share even when their fields are shifted.
    pitch_nm : float or None
        Lines: the slope of line centre against line index (gaps of missing lines kept),
        when every centre lies within 0.3 pitch of that grid (else not periodic);
        holes and pillars: the median distance to the nearest neighbour's centroid.
    roughness : Roughness or None
    """

    counts: dict
    kind: str | None
    cd_mean_nm: float | None
    cd_3sigma_nm: float | None
    pitch_nm: float | None
    roughness: Roughness | None
    cd_median_nm: float | None = None


def _line_pitch(lines: list[FeatureMetrics]) -> float | None:
    centres = []
    for m in lines:
        pos, left, right = m.edges
        centres.append(float(np.median(0.5 * (left + right))))
    if len(centres) < 3:
        return None
    c = np.sort(np.asarray(centres))
    step = np.diff(c)
    if not (step > 0).all():
        return None
    base = float(np.median(step))
    index = np.concatenate([[0], np.cumsum(np.maximum(1, np.round(step / base)))])
    fit = np.polyfit(index, c, 1)
    # a pitch only where the lines are periodic: every centre within 0.3 of it of the fitted grid (a missing or
    # extra line is off by half a pitch; the scan's own bow on a real tool stays within a few percent)
    if np.abs(c - np.polyval(fit, index)).max() > 0.3 * fit[0]:
        return None
    return float(fit[0])


def measure_field(features: list[FeatureMetrics], *, pixel_size_nm: float,
                  touches_border: list[bool] | None = None) -> FieldMetrics:
    """Per-field counts, CD mean and uniformity, pitch and roughness.

    Parameters
    ----------
    features : list of FeatureMetrics
    pixel_size_nm : float
    touches_border : list of bool, optional
        Per feature; holes and pillars cut by the border are left out of the CD statistics.

    Returns
    -------
    FieldMetrics
    """
    touches = touches_border if touches_border is not None else [False] * len(features)
    counts: dict[str, int] = {}
    for m in features:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    if not features:
        return FieldMetrics(counts, None, None, None, None, None)
    whole = [m.cd_nm for m in features if m.kind != "partial"]
    kind = max((k for k in counts if k != "partial"), key=lambda k: (counts[k], k), default="partial")
    chosen = [m for m, t in zip(features, touches) if m.kind == kind and (kind == "line" or not t)]
    cds = np.array([m.cd_nm for m in chosen])
    cd_mean = float(cds.mean()) if cds.size else None
    cd_3s = float(3 * cds.std()) if cds.size > 1 else None
    pitch = None
    rough = None
    if kind == "line":
        lines = [m for m in features if m.kind == "line"]
        p = _line_pitch(lines)
        pitch = p * pixel_size_nm if p is not None else None
        rough = roughness(lines, pixel_size_nm=pixel_size_nm)
    elif kind in ("hole", "pillar"):
        pts = np.array([m.centroid_xy for m in features if m.kind == kind])
        if len(pts) >= 2:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(pts).query(pts, k=2)
            pitch = float(np.median(d[:, 1])) * pixel_size_nm
    return FieldMetrics(counts, kind, cd_mean, cd_3s, pitch, rough, float(np.median(whole)) if whole else None)
