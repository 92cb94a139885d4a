"""Contours for OPC: Sobel edge map, sub-pixel polygons, and export to JSON, CSV and GDS.

Contours are (N, 2) arrays of points (x = column, y = row) in pixels, closed (first
point repeated last). In nm, ``x_nm = (x + 0.5) * pixel_size_nm`` (pixel ``c`` covers
``[c, c+1] * pixel_size_nm``); GDS files flip ``y`` so that it points up, as in a layout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from skimage import measure
from skimage.filters import sobel

from .coords import rc_to_xy
from .dataset import atomic_write

__all__ = [
    "sobel_edges",
    "extract_contours",
    "contour_length",
    "fill_polygon",
    "smooth_compact",
    "contours_to_nm",
    "write_contours_json",
    "write_contours_csv",
    "write_contours_gds",
]


def sobel_edges(mask: np.ndarray) -> np.ndarray:
    """Edge pixels of a mask by the Sobel operator (the paper's contour step, III-D).

    Parameters
    ----------
    mask : (M, N) bool ndarray

    Returns
    -------
    (M, N) bool ndarray
        Mask pixels where the Sobel gradient magnitude is non-zero: a one-pixel
        inner boundary.
    """
    m = np.asarray(mask, dtype=bool)
    out = np.zeros(m.shape, dtype=bool)
    sl = _bbox(m, margin=1)
    if sl is None:
        return out
    crop = np.pad(m[sl].astype(float), 1)
    out[sl] = (sobel(crop)[1:-1, 1:-1] > 1e-9) & m[sl]
    return out


def _bbox(mask: np.ndarray, *, margin: int) -> tuple[slice, slice] | None:
    """Slices of the non-zero bounding box of a mask, grown by ``margin`` within the image."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(np.any(mask, axis=0))
    return (slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
            slice(max(0, cols[0] - margin), cols[-1] + margin + 1))


def extract_contours(mask: np.ndarray, *, level: float = 0.5, min_points: int = 4) -> list[np.ndarray]:
    """Sub-pixel polygon contours of a mask by marching squares.

    Parameters
    ----------
    mask : (M, N) ndarray
        Binary mask, or a probability map for contours between pixel centres.
    level : float
        Iso-value of the contour.
    min_points : int
        Shorter contours are dropped.

    Returns
    -------
    list of (K, 2) float ndarray
        Closed contours as points (x, y) in pixels, longest first. The image border
        closes contours that reach it.
    """
    arr = np.asarray(mask, dtype=float)
    sl = _bbox(arr >= level, margin=1)
    if sl is None:
        return []
    m = np.pad(arr[sl], 1)
    offset = np.array([sl[0].start - 1.0, sl[1].start - 1.0])
    contours = [rc_to_xy(c + offset) for c in measure.find_contours(m, level)]
    contours = [c for c in contours if len(c) >= min_points]
    return sorted(contours, key=lambda c: -len(c))


def contour_length(contour: np.ndarray) -> float:
    """Length of a polyline in its own units."""
    c = np.asarray(contour, float)
    return float(np.hypot(*np.diff(c, axis=0).T).sum()) if len(c) > 1 else 0.0


def contours_to_nm(contours: Iterable[np.ndarray], pixel_size_nm: float) -> list[np.ndarray]:
    """Contours from pixels to nm, with pixel ``c`` covering ``[c, c + 1] * pixel_size_nm``."""
    return [(np.asarray(c, float) + 0.5) * pixel_size_nm for c in contours]


def write_contours_json(path: str | Path, contours: dict, *, stem: str, pixel_size_nm: float,
                        extra: dict | None = None) -> Path:
    """Write contours as JSON: ``{"stem", "pixel_size_nm", "features": {label: {"contours_px", "contours_nm"}}}``."""
    doc = {
        "stem": stem,
        "pixel_size_nm": pixel_size_nm,
        "coordinates": "x = column, y = row, pixel centres at integers; nm = (px + 0.5) * pixel_size_nm",
        "features": {
            str(label): {
                "contours_px": [np.round(c, 4).tolist() for c in cs],
                "contours_nm": [np.round(c, 4).tolist() for c in contours_to_nm(cs, pixel_size_nm)],
                **((extra or {}).get(label, {})),
            }
            for label, cs in contours.items()
        },
    }
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc)))


def write_contours_csv(path: str | Path, contours: dict, *, stem: str, pixel_size_nm: float) -> Path:
    """Write contours as CSV rows ``stem,label,contour,point,x_px,y_px,x_nm,y_nm``."""

    def _write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stem", "label", "contour", "point", "x_px", "y_px", "x_nm", "y_nm"])
            for label, cs in contours.items():
                for ci, (c_px, c_nm) in enumerate(zip(cs, contours_to_nm(cs, pixel_size_nm))):
                    for pi, ((x, y), (xn, yn)) in enumerate(zip(c_px, c_nm)):
                        w.writerow([stem, label, ci, pi, f"{x:.4f}", f"{y:.4f}", f"{xn:.4f}", f"{yn:.4f}"])

    return atomic_write(path, _write)


def write_contours_gds(path: str | Path, contours: dict, *, stem: str, pixel_size_nm: float,
                       image_height_px: int, layer: int = 1) -> Path:
    """Write contours to a GDSII file, one polygon per feature, in nm.

    Parameters
    ----------
    path : path
    contours : dict
        ``{label: [contour, ...]}``; the first (longest, outer) contour of each feature
        becomes its polygon, labelled with a text element naming the feature.
    stem : str
        Name of the GDS cell.
    pixel_size_nm : float
    image_height_px : int
        To flip ``y`` upward: ``y_nm = (height - y - 0.5) * pixel_size_nm``.
    layer : int
        GDS layer of the polygons (datatype 0); labels go on the same layer.

    Returns
    -------
    Path
    """
    import gdstk

    lib = gdstk.Library(name="SEGSEM", unit=1e-9, precision=1e-12)
    cell = lib.new_cell(str(stem)[:32] or "IMAGE")
    for label, cs in contours.items():
        if not cs:
            continue
        pts = np.asarray(cs[0], float)[:-1] if np.allclose(cs[0][0], cs[0][-1]) else np.asarray(cs[0], float)
        if len(pts) < 3:
            continue
        xy = np.column_stack([(pts[:, 0] + 0.5) * pixel_size_nm, (image_height_px - pts[:, 1] - 0.5) * pixel_size_nm])
        cell.add(gdstk.Polygon(xy, layer=layer, datatype=0))
        cx, cy = xy.mean(axis=0)
        cell.add(gdstk.Label(str(label), (cx, cy), layer=layer, texttype=0))
    # GDSII boundaries hold up to 8190 vertices (gdstk's default fractures at 199)
    return atomic_write(path, lambda tmp: lib.write_gds(str(tmp), max_points=8190))


def resample_closed(contour: np.ndarray, *, step: float | None = None, n: int | None = None) -> np.ndarray:
    """A closed contour (K, 2) resampled evenly along its length: every ``step`` px (at least 8
    points), or at ``n`` points."""
    c = np.asarray(contour, float)
    if len(c) > 1 and np.allclose(c[0], c[-1]):
        c = c[:-1]
    closed = np.vstack([c, c[:1]])
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    if n is None:
        n = max(8, int(round(s[-1] / step)))
    t = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])], 1)


def smooth_compact(contour: np.ndarray, *, harmonics: int = 2, tolerance_px: float = 1.0,
                   max_size_px: float = 20.0) -> np.ndarray | None:
    """A compact feature's contour (a contact hole, a pillar) smoothed to its lowest Fourier harmonics, or None.

    The contour, as a complex function of arc length (128 points), keeps its harmonics
    ``-harmonics`` to ``harmonics`` (1 alone is an ellipse, 2 lets it be egg-shaped or
    slightly triangular). The smooth contour is taken only when it stays within
    ``tolerance_px`` (RMS) of the contour: the edge noise of a small round feature then
    averages out over its whole outline, while a feature whose shape needs more harmonics
    (an L, a T, a line end, a star) is left as it was (None). So is a feature more than
    ``max_size_px`` across: its outline is long enough to show its own shape (the rounded
    square of a large contact hole), which few harmonics would round off.

    Parameters
    ----------
    contour : (N, 2) ndarray
        Closed contour (x, y) in px.
    harmonics : int
        Highest harmonic kept (at least 1).
    tolerance_px : float
        Largest RMS distance, px, between the contour and its smooth version.
    max_size_px : float
        Largest mean diameter, px, of a feature that is smoothed.

    Returns
    -------
    (129, 2) ndarray or None
        The smooth contour, closed (first point repeated last).
    """
    if harmonics < 1:
        raise ValueError(f"harmonics={harmonics!r}: expected at least 1")
    pts = resample_closed(contour, n=128)
    z = pts[:, 0] + 1j * pts[:, 1]
    if 2 * float(np.abs(z - z.mean()).mean()) > max_size_px:
        return None
    f = np.fft.fft(z)
    keep = np.zeros(len(z), bool)
    keep[:harmonics + 1] = True
    keep[len(z) - harmonics:] = True
    smooth = np.fft.ifft(np.where(keep, f, 0))
    if float(np.sqrt(np.mean(np.abs(smooth - z) ** 2))) > tolerance_px:
        return None
    out = np.c_[smooth.real, smooth.imag]
    return np.vstack([out, out[:1]])


def fill_polygon(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside a polygon (x, y): an even-odd scanline fill.

    Parameters
    ----------
    poly : (N, 2) ndarray
        Vertices (x, y) in px, pixel centres at integers; not repeated at the end.
    shape : (M, N) tuple

    Returns
    -------
    (M, N) bool ndarray
    """
    out = np.zeros(shape, bool)
    x, y = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    rows = np.arange(max(0, int(np.ceil(y.min()))), min(shape[0] - 1, int(np.floor(y.max()))) + 1)
    if not len(rows):
        return out
    lo, hi = np.minimum(y, y2), np.maximum(y, y2)
    crosses = (lo[None] <= rows[:, None]) & (rows[:, None] < hi[None])  # half-open: each vertex counted once
    dy = np.where(y2 != y, y2 - y, 1.0)
    xs = x[None] + (rows[:, None] - y[None]) / dy[None] * (x2 - x)[None]
    for r, xr, c in zip(rows, xs, crosses):
        xr = np.sort(xr[c])
        for a, b in zip(xr[0::2], xr[1::2]):
            c0, c1 = max(0, int(np.ceil(a))), min(shape[1] - 1, int(np.floor(b)))
            if c1 >= c0:
                out[r, c0:c1 + 1] = True
    return out
