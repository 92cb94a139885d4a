"""Layout clips: design features on a nanometre grid.

Every feature is a union of axis-parallel rectangles ``(x0, y0, x1, y1)`` in nm,
the rectilinear shapes of a mask layout. ``x`` runs along columns, ``y`` along rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Feature", "LayoutClip", "LAYOUT_KINDS", "make_layout", "rasterize_features", "feature_outline"]

#: Clip kinds the generator draws, each a function below.
LAYOUT_KINDS = ("lines", "contacts", "iso_line", "line_ends", "lt_shapes", "polygons")


@dataclass(frozen=True)
class Feature:
    """One design feature: a union of rectangles (x0, y0, x1, y1) in nm."""

    label: int
    rects: tuple[tuple[float, float, float, float], ...]


@dataclass(frozen=True)
class LayoutClip:
    """A layout clip of ``field_nm`` by ``field_nm``.

    Attributes
    ----------
    kind : str
        One of :data:`LAYOUT_KINDS`.
    tone : {"line", "hole"}
        ``line``: the features are resist that stays (bright in SEM); ``hole``: the
        features are openings in the resist (dark in SEM, with a bright rim).
    features : tuple of Feature
    field_nm : float
    """

    kind: str
    tone: str
    features: tuple[Feature, ...]
    field_nm: float


def _lines(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    cd = rng.uniform(32, 60)
    pitch = cd * rng.uniform(2.0, 3.0)
    n = int(np.clip((field * 0.8) // pitch, 2, 6))
    length = rng.uniform(0.5, 0.75) * field
    start = (field - (n - 1) * pitch - cd) / 2
    y0 = (field - length) / 2 + rng.uniform(-0.05, 0.05) * field
    return "line", [[(start + i * pitch, y0, start + i * pitch + cd, y0 + length)] for i in range(n)]


def _contacts(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    size = rng.uniform(45, 75)
    pitch = size * rng.uniform(1.8, 2.6)
    n = int(np.clip((field * 0.85) // pitch, 2, 4))
    start = (field - (n - 1) * pitch - size) / 2
    elong = rng.uniform(1.0, 1.4) if rng.random() < 0.3 else 1.0
    feats = []
    for i in range(n):
        for j in range(n):
            x0, y0 = start + i * pitch, start + j * pitch
            feats.append([(x0, y0, x0 + size * elong, y0 + size)])
    return "hole", feats


def _iso_line(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    feats = []
    n = int(rng.integers(1, 3))
    for i in range(n):
        cd = rng.uniform(40, 80)
        length = rng.uniform(0.45, 0.7) * field
        x0 = field * (i + 1) / (n + 1) - cd / 2
        y0 = (field - length) / 2
        feats.append([(x0, y0, x0 + cd, y0 + length)])
    return "line", feats


def _line_ends(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    cd = rng.uniform(35, 60)
    gap = rng.uniform(35, 70)
    pitch = cd * rng.uniform(2.4, 3.2)
    n = int(np.clip((field * 0.8) // pitch, 1, 3))
    arm = (field * 0.8 - gap) / 2
    start = (field - (n - 1) * pitch - cd) / 2
    y_top = field * 0.1
    feats = []
    for i in range(n):
        x0 = start + i * pitch
        feats.append([(x0, y_top, x0 + cd, y_top + arm)])
        feats.append([(x0, y_top + arm + gap, x0 + cd, y_top + 2 * arm + gap)])
    return "line", feats


def _lt_shapes(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    cell = field / 2
    feats = []
    for ci in range(2):
        for cj in range(2):
            if rng.random() < 0.15 and feats:
                continue
            w = rng.uniform(35, 55)
            a = rng.uniform(0.45, 0.7) * cell
            b = rng.uniform(0.45, 0.7) * cell
            ox = ci * cell + (cell - a) / 2
            oy = cj * cell + (cell - b) / 2
            if rng.random() < 0.5:  # L
                feats.append([(ox, oy, ox + w, oy + b), (ox, oy + b - w, ox + a, oy + b)])
            else:  # T
                feats.append([(ox, oy, ox + a, oy + w), (ox + (a - w) / 2, oy, ox + (a + w) / 2, oy + b)])
    return "line", feats


def _polygons(rng: np.random.Generator, field: float) -> tuple[str, list[list[tuple]]]:
    cell = field / 2
    feats = []
    for ci in range(2):
        for cj in range(2):
            size = rng.uniform(0.45, 0.65) * cell
            ox = ci * cell + (cell - size) / 2
            oy = cj * cell + (cell - size) / 2
            rects = [(ox, oy, ox + size * rng.uniform(0.5, 1.0), oy + size * rng.uniform(0.35, 0.6))]
            x0, y0, x1, y1 = rects[0]
            w = rng.uniform(0.35, 0.6) * size
            rects.append((x0, y0, x0 + w, oy + size))  # a leg down: an L, U or Z-like outline
            if rng.random() < 0.5:
                rects.append((x1 - w * 0.8, y0, x1, y0 + size * rng.uniform(0.6, 1.0)))
            feats.append(rects)
    return "line", feats


_MAKERS = {
    "lines": _lines,
    "contacts": _contacts,
    "iso_line": _iso_line,
    "line_ends": _line_ends,
    "lt_shapes": _lt_shapes,
    "polygons": _polygons,
}


def make_layout(kind: str, rng: np.random.Generator, field_nm: float) -> LayoutClip:
    """Draw a layout clip of one kind.

    Parameters
    ----------
    kind : str
        One of :data:`LAYOUT_KINDS`.
    rng : numpy.random.Generator
    field_nm : float
        Side of the square clip in nm.

    Returns
    -------
    LayoutClip
        Features numbered from 1, all inside the clip.
    """
    if kind not in _MAKERS:
        raise ValueError(f"Invalid layout kind {kind!r}: expected one of {LAYOUT_KINDS}")
    tone, rect_lists = _MAKERS[kind](rng, field_nm)
    features = tuple(
        Feature(label=i + 1, rects=tuple(tuple(float(v) for v in r) for r in rects))
        for i, rects in enumerate(rect_lists)
    )
    return LayoutClip(kind=kind, tone=tone, features=features, field_nm=float(field_nm))


def _coverage_1d(lo: float, hi: float, n: int, pixel_size_nm: float) -> np.ndarray:
    """Fraction of each pixel [c*ps, (c+1)*ps] covered by the interval [lo, hi]."""
    edges = np.arange(n + 1) * pixel_size_nm
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) / pixel_size_nm


def rasterize_features(clip: LayoutClip, shape: tuple[int, int], pixel_size_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Area coverage of the design on the pixel grid.

    Parameters
    ----------
    clip : LayoutClip
    shape : (rows, cols)
    pixel_size_nm : float
        Pixel ``(row r, col c)`` covers ``[c*ps, (c+1)*ps] x [r*ps, (r+1)*ps]`` nm.

    Returns
    -------
    coverage : (rows, cols) float ndarray
        Fraction of each pixel covered by any feature (exact for disjoint rectangles).
    labels : (rows, cols) int ndarray
        Label of the feature covering each pixel centre, 0 elsewhere.
    """
    rows, cols = shape
    coverage = np.zeros(shape)
    labels = np.zeros(shape, dtype=np.int32)
    for feat in clip.features:
        for x0, y0, x1, y1 in feat.rects:
            cov = np.outer(_coverage_1d(y0, y1, rows, pixel_size_nm), _coverage_1d(x0, x1, cols, pixel_size_nm))
            np.maximum(coverage, cov, out=coverage)
            labels[cov >= 0.5] = feat.label
    return coverage, labels


def feature_outline(feature: Feature, pixel_size_nm: float) -> list[np.ndarray]:
    """Outline polygons of a feature in pixel coordinates (x, y), pixel centres at integers.

    The union of the feature's rectangles, computed with gdstk's boolean OR.
    """
    import gdstk

    rects = [gdstk.rectangle((x0, y0), (x1, y1)) for x0, y0, x1, y1 in feature.rects]
    merged = gdstk.boolean(rects, [], "or")
    return [np.asarray(p.points) / pixel_size_nm - 0.5 for p in merged]
