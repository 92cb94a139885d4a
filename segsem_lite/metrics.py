"""Mask and contour metrics: IoU, precision, recall, F1, edge placement error, average exposure.

Coordinates: contours here are (x = column, y = row) arrays of shape (N, 2), as
returned by :func:`segsem_lite.contours.extract_contours`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "MaskScores",
    "mask_scores",
    "iou",
    "EdgePlacementError",
    "edge_placement_error",
    "average_exposure",
    "FAILURE_MODES",
    "diagnose_mask",
]


@dataclass(frozen=True)
class MaskScores:
    """Pixel-overlap scores of a predicted mask against its ground truth."""

    iou: float
    precision: float
    recall: float
    f1: float


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> MaskScores:
    """IoU, precision, recall and F1 of a predicted mask.

    Parameters
    ----------
    pred, truth : (M, N) array_like of bool
        Predicted and ground-truth masks of one target.

    Returns
    -------
    MaskScores
        ``iou = |P & T| / |P | T|``, ``precision = |P & T| / |P|``,
        ``recall = |P & T| / |T|`` and ``f1`` their harmonic mean. Where a
        denominator is zero the score is 1 if both masks are empty and 0 otherwise.

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[:, :2] = True
    >>> mask_scores(a, b).iou
    0.3333333333333333
    """
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"Invalid mask shapes: pred {p.shape} and truth {t.shape} differ")
    tp = float(np.count_nonzero(p & t))
    n_p = float(np.count_nonzero(p))
    n_t = float(np.count_nonzero(t))
    both_empty = n_p == 0 and n_t == 0
    union = n_p + n_t - tp
    iou_ = tp / union if union else float(both_empty)
    precision = tp / n_p if n_p else float(both_empty)
    recall = tp / n_t if n_t else float(both_empty)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return MaskScores(iou=iou_, precision=precision, recall=recall, f1=f1)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two masks; see :func:`mask_scores`."""
    return mask_scores(pred, truth).iou


@dataclass(frozen=True)
class EdgePlacementError:
    """Distances from predicted contour points to the ground-truth contour.

    Attributes
    ----------
    mean_px, p95_px, max_px : float
        Mean, 95th percentile and maximum distance in pixels.
    pixel_size_nm : float or None
        When given, the ``*_nm`` properties convert the distances.
    n_points : int
        Number of predicted contour points measured.
    """

    mean_px: float
    p95_px: float
    max_px: float
    n_points: int
    pixel_size_nm: float | None = None

    def _nm(self, value: float) -> float | None:
        return None if self.pixel_size_nm is None else value * self.pixel_size_nm

    @property
    def mean_nm(self) -> float | None:
        return self._nm(self.mean_px)

    @property
    def p95_nm(self) -> float | None:
        return self._nm(self.p95_px)

    @property
    def max_nm(self) -> float | None:
        return self._nm(self.max_px)


def _densify(contour: np.ndarray, step: float) -> np.ndarray:
    """Points along a polyline no further apart than ``step``."""
    c = np.asarray(contour, dtype=float)
    if len(c) < 2:
        return c
    seg = np.diff(c, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    n = np.maximum(1, np.ceil(lengths / step).astype(int))
    t = np.concatenate([np.arange(k) / k for k in n])
    idx = np.repeat(np.arange(len(seg)), n)
    pts = c[idx] + seg[idx] * t[:, None]
    return np.vstack([pts, c[-1:]])


def edge_placement_error(
    pred_contours: list[np.ndarray],
    truth_contours: list[np.ndarray],
    *,
    pixel_size_nm: float | None = None,
    resolution_px: float = 0.02,
) -> EdgePlacementError:
    """Edge placement error of predicted contours against ground-truth contours.

    For every vertex of the predicted contours, the distance to the nearest point of
    the ground-truth contours (taken as polylines, sampled every ``resolution_px``).

    Parameters
    ----------
    pred_contours, truth_contours : list of (K, 2) ndarray
        Contours as (x, y) points in pixels.
    pixel_size_nm : float, optional
        Pixel size, to report the distances in nm too.
    resolution_px : float
        Sampling step of the ground-truth polylines; bounds the error of the distance.

    Returns
    -------
    EdgePlacementError
        ``inf`` distances when either side has no contour.

    Notes
    -----
    EPE in lithography is the signed offset of a printed edge from its target; this is
    its unsigned, contour-to-contour form used to score extracted SEM contours.
    """
    pred = [np.asarray(c, float) for c in pred_contours if len(c)]
    truth = [np.asarray(c, float) for c in truth_contours if len(c)]
    if not pred or not truth:
        return EdgePlacementError(np.inf, np.inf, np.inf, sum(len(c) for c in pred), pixel_size_nm)
    points = np.vstack(pred)
    reference = np.vstack([_densify(c, resolution_px) for c in truth])
    distances, _ = cKDTree(reference).query(points)
    return EdgePlacementError(
        mean_px=float(distances.mean()),
        p95_px=float(np.percentile(distances, 95)),
        max_px=float(distances.max()),
        n_points=int(len(points)),
        pixel_size_nm=pixel_size_nm,
    )


def average_exposure(image: np.ndarray) -> float:
    """The paper's "average exposure" of an image: the variance of its Laplacian.

    Parameters
    ----------
    image : (M, N) ndarray
        Grayscale image; 16-bit images are scaled to the 8-bit range first so
        values compare across bit depths.

    Returns
    -------
    float
        Variance of the 4-neighbour Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]``.

    Notes
    -----
    SegSEM's Table I labels this "average exposure computed using the Laplacian
    operator". The variance of the Laplacian is a measure of high-frequency content:
    edge sharpness plus shot and scan noise. It is not the lithographic exposure dose;
    it rises with noise and with defocus-free sharp edges alike, so it is a proxy for
    how hard an image is, not a dose axis.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"Invalid image shape: expected (M, N), got {img.shape}")
    x = img.astype(np.float64)
    if img.dtype == np.uint16:
        x = x / 257.0
    lap = (
        -4.0 * x[1:-1, 1:-1] + x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:]
    )
    return float(lap.var()) if lap.size else 0.0


#: Labels of :func:`diagnose_mask`.
FAILURE_MODES = ("ok", "miss", "edge-ring", "leak", "fragments", "partial")


def diagnose_mask(pred: np.ndarray, truth: np.ndarray, *, ok_iou: float = 0.8, ring_px: int = 4) -> str:
    """Name what went wrong with a predicted mask, SEM style.

    Parameters
    ----------
    pred, truth : (M, N) bool ndarray
    ok_iou : float
        IoU from which a mask counts as ``ok``.
    ring_px : int
        Width of the band along the true boundary that counts as the edge ring.

    Returns
    -------
    str
        ``ok``; ``miss`` (almost nothing of the target); ``edge-ring`` (the prediction lies
        mostly in a band along the true edge, the bright ring of a SEM feature, and misses
        the inside); ``leak`` (more than half of the prediction lies outside the target: into
        the substrate or neighbours); ``fragments`` (several pieces); ``partial`` (otherwise).
    """
    from scipy import ndimage as ndi

    p = np.asarray(pred, bool)
    t = np.asarray(truth, bool)
    s = mask_scores(p, t)
    if s.iou >= ok_iou:
        return "ok"
    if s.recall < 0.1:
        return "miss"
    if s.precision < 0.5:
        return "leak"
    inner = ndi.binary_erosion(t, iterations=ring_px)
    band = ndi.binary_dilation(t, iterations=ring_px) & ~inner
    if inner.any() and np.count_nonzero(p & band) > 0.6 * np.count_nonzero(p) and \
            np.count_nonzero(p & inner) < 0.5 * np.count_nonzero(inner):
        return "edge-ring"
    if ndi.label(p)[1] > 1:
        return "fragments"
    return "partial"
