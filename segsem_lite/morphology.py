"""Morphological refinement of the final mask (SegSEM III-D): closing, hole filling, speck removal."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .config import RefineConfig, nm_to_px
from .threshold import component_at

__all__ = ["refine_mask", "count_regions", "large_regions"]


def large_regions(mask: np.ndarray, *, min_px: int = 0) -> tuple[np.ndarray, int]:
    """The mask without its 8-connected regions under ``min_px`` pixels, and how many regions remain.

    The mask comes back whole when no region reaches ``min_px`` (the count is then 0), so
    what is measured of it never vanishes for being small.
    """
    m = np.asarray(mask, dtype=bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= max(min_px, 1)) + 1
    core = np.isin(labels, big) if 0 < len(big) < n - 1 else m
    return core, int(len(big))


def count_regions(mask: np.ndarray, *, min_px: int = 0) -> int:
    """Number of 8-connected regions of at least ``min_px`` pixels."""
    return large_regions(mask, min_px=min_px)[1]


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def refine_mask(
    mask: np.ndarray,
    *,
    prompt_xy: tuple[float, float] | None = None,
    config: RefineConfig = RefineConfig(),
    pixel_size_nm: float = 1.0,
) -> np.ndarray:
    """Close small gaps, fill holes, drop specks and keep the prompted component.

    Parameters
    ----------
    mask : (M, N) bool ndarray
    prompt_xy : (float, float), optional
        Prompt point (x, y); with ``config.keep_prompted`` only its component (or the
        nearest) is kept.
    config : RefineConfig
        Sizes in nm.
    pixel_size_nm : float

    Returns
    -------
    (M, N) bool ndarray
        A new array.

    Examples
    --------
    >>> m = np.zeros((9, 9), bool); m[2:7, 2:7] = True; m[4, 4] = False
    >>> bool(refine_mask(m)[4, 4])
    True
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m.copy()
    rows, cols = np.nonzero(m)
    radius = int(round(nm_to_px(config.closing_nm, pixel_size_nm)))
    pad = radius + 2
    r0, r1 = max(0, rows.min() - pad), min(m.shape[0], rows.max() + pad + 1)
    c0, c1 = max(0, cols.min() - pad), min(m.shape[1], cols.max() + pad + 1)
    crop = m[r0:r1, c0:c1].astype(np.uint8)
    if radius > 0:
        padded = cv2.copyMakeBorder(crop, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
        crop = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, _disk(radius))[radius:-radius, radius:-radius]
    crop = crop.astype(bool)
    if config.fill_holes:
        crop = ndi.binary_fill_holes(crop)
    min_px = nm_to_px(config.min_speck_nm2, pixel_size_nm ** 2)
    if min_px > 0:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        # a speck is small against the largest region too: a small feature at a fine pixel size stays
        min_px = min(min_px, 0.25 * stats[1:, cv2.CC_STAT_AREA].max(initial=0))
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
        crop = keep[labels]
    out = np.zeros_like(m)
    out[r0:r1, c0:c1] = crop
    if config.keep_prompted and prompt_xy is not None and out.any():
        local = (prompt_xy[0] - c0, prompt_xy[1] - r0)
        # the nearest component however far: the fallback may have taken a feature beside the prompt
        kept = component_at(crop, local, search_radius_px=float(np.hypot(*m.shape)))
        out[r0:r1, c0:c1] = kept
    return out
