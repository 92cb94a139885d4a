"""Feature discovery: every feature in the field becomes a target, with no mask, prompt or layout.

The field is thresholded once at its own scale (a local mean over a window of
``FallbackConfig.window`` feature scales, after the same smoothing as the fallback), in both
polarities. A polarity whose largest region covers more than ``max_area_fraction`` of the
field is the background; of the others, the one whose region boundaries lie on the
stronger edges is the features' tone (bright on a tie: resist lines and pillars). Each
region whose boundary stands above the noise is a target, prompted at its most interior
point, with its size and box as hints for the per-target pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import FallbackConfig
from .errors import SegSEMError
from .scale import ImageScale, measure_scale, to_unit_float
from .threshold import _local_mean_std, _noise_gradient, _odd, _sigma, inside_depth

__all__ = ["Feature", "Discovery", "discover_features"]

#: A region whose boundary edge is under this share of the pattern's strong edges (90th percentile over
#: regions) is texture or grain, not a feature.
_RELATIVE_EDGE = 0.4

#: With five or more features inside the field, a region narrower than this share of their median width is a
#: speck of noise between them, not a feature.
_RELATIVE_WIDTH = 0.35

#: A pattern's edges (area-weighted over its regions) stand at least this many times above the noise's own
#: gradient; the blobs that a local threshold cuts out of pure noise reach about 2.
_MIN_PATTERN_RATIO = 3.0

#: Two polarities whose edge scores differ by less than this factor are a tie.
_TIE = 1.1


@dataclass(frozen=True)
class Feature:
    """One discovered feature.

    Attributes
    ----------
    prompt_xy : (float, float)
        Its most interior point (x, y), px.
    width_px : float
        Twice its largest inscribed radius, px.
    box_xyxy : (int, int, int, int)
        Bounding box (x0, y0, x1, y1) of its pixels, px.
    touches_border : bool
        It runs past the field's edge (a grating line, a hole cut by the frame).
    area_px : int
    """

    prompt_xy: tuple[float, float]
    width_px: float
    box_xyxy: tuple[int, int, int, int]
    touches_border: bool
    area_px: int


@dataclass(frozen=True)
class Discovery:
    """What discovery found in one field.

    Attributes
    ----------
    features : list of Feature
    tone : {"bright", "dark"} or None
        The features' tone (None when nothing stands out of the noise).
    labels : (M, N) int32 ndarray
        The discovered regions, 1..K in the order of ``features``.
    scale : ImageScale
    edge_ratio : dict of str to float
        Per polarity, the median edge under the region boundaries over the noise's own
        (0 for a polarity that is the background).
    """

    features: list
    tone: str | None
    labels: np.ndarray
    scale: ImageScale
    edge_ratio: dict


def _regions(fg: np.ndarray, grad: np.ndarray, min_area: int):
    """Labels of ``fg`` (4-connected), their areas and boundary pixels' median gradient per region."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.view(np.uint8), connectivity=4)
    kernel = np.ones((3, 3), np.uint8)
    inner = cv2.erode(fg.view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
    boundary = fg.astype(bool) & ~inner
    lab = labels[boundary]
    g = grad[boundary]
    order = np.argsort(lab, kind="stable")
    lab, g = lab[order], g[order]
    starts = np.searchsorted(lab, np.arange(n + 1))
    medians = np.zeros(n, np.float32)
    for i in range(1, n):
        seg = g[starts[i]:starts[i + 1]]
        if seg.size:
            medians[i] = np.median(seg)
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = areas >= min_area
    keep[0] = False
    return labels, stats, medians, keep


def discover_features(
    image: np.ndarray,
    *,
    config: FallbackConfig = FallbackConfig(),
    scale: ImageScale | None = None,
    tone: str | None = None,
    min_width_px: float = 4.0,
) -> Discovery:
    """Find every feature of an SEM field.

    Parameters
    ----------
    image : (M, N) ndarray
        The field (without its data bar), raw.
    config : FallbackConfig
        Window, smoothing, edge-over-noise ratio and background share, as the fallback uses.
    scale : ImageScale, optional
        Measured here when omitted.
    tone : {"bright", "dark"}, optional
        The features' tone when the user knows it.
    min_width_px : float
        Narrower regions are noise, not features.

    Returns
    -------
    Discovery
    """
    if tone not in (None, "bright", "dark"):
        raise SegSEMError(f"tone={tone!r}: expected 'bright', 'dark' or None (decided from the image)")
    img = to_unit_float(image)
    scale = scale or measure_scale(img)
    feature = max(4.0, scale.feature_px)
    # one threshold for the whole field has no k to sweep: smooth more than the fallback does where noise needs it,
    # up to a quarter of the feature scale
    sigma = max(_sigma(feature, scale, config), min(0.25 * feature, config.denoise_snr / max(scale.snr, 1e-6)))
    window = _odd(max(15, config.window * feature))
    sm = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    # edges are scored at a tenth of the feature scale at least: a broad, blurred edge of a large feature keeps its
    # gradient there while the noise's falls away
    score_sigma = max(sigma, 0.1 * feature)
    scored = sm if score_sigma == sigma else cv2.GaussianBlur(img, (0, 0), score_sigma, borderType=cv2.BORDER_REFLECT)
    grad = np.hypot(cv2.Sobel(scored, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(scored, cv2.CV_32F, 0, 1, ksize=3))
    floor = _noise_gradient(scale.noise, score_sigma)
    mean, _ = _local_mean_std(sm, window)
    min_area = int(max(8, 0.05 * feature * feature))
    found: dict[str, tuple] = {}
    ratios: dict[str, float] = {}
    for pol in ("bright", "dark") if tone is None else (tone,):
        fg = (sm > mean) if pol == "bright" else (sm < mean)
        labels, stats, medians, keep = _regions(fg.astype(np.uint8), grad, min_area)
        areas = stats[:, cv2.CC_STAT_AREA]
        if tone is None and areas[1:].max(initial=0) > config.max_area_fraction * img.size:
            ratios[pol] = 0.0
            continue
        keep &= medians >= config.min_edge_ratio * floor
        if keep.any():
            # the pattern's own edges set the bar: texture and grain between features have much weaker ones
            strong = float(np.percentile(medians[keep], 90))
            keep &= medians >= _RELATIVE_EDGE * strong
        if not keep.any():
            ratios[pol] = 0.0
            continue
        weights = areas[keep].astype(np.float64)
        ratios[pol] = float(np.average(medians[keep], weights=weights) / floor)
        found[pol] = (labels, stats, keep)
    found = {pol: v for pol, v in found.items() if ratios[pol] >= _MIN_PATTERN_RATIO}
    if not found:
        return Discovery([], None, np.zeros(img.shape, np.int32), scale, ratios)
    if len(found) == 2:
        pol = "bright" if ratios["bright"] * _TIE >= ratios["dark"] else "dark"
    else:
        pol = next(iter(found))
    labels, stats, keep = found[pol]
    rows, cols = img.shape
    seen = []
    for i in np.flatnonzero(keep):
        x, y, w, h = (int(v) for v in stats[i, :4])
        region = (labels[y:y + h, x:x + w] == i)
        depth = inside_depth(region)
        j = int(np.argmax(depth))
        touches = x == 0 or y == 0 or x + w == cols or y + h == rows
        seen.append((i, region, 2.0 * float(depth.flat[j]), (float(x + j % w), float(y + j // w)), (x, y, w, h),
                     bool(touches)))
    # specks between the features of a pattern are much narrower than the features themselves
    inside = [width for _, _, width, _, _, touches in seen if not touches]
    typical = float(np.median(inside)) if len(inside) >= 5 else 0.0
    features = []
    out = np.zeros(img.shape, np.int32)
    for i, region, width, prompt, (x, y, w, h), touches in seen:
        if width < max(min_width_px, _RELATIVE_WIDTH * typical):
            continue
        features.append(Feature(prompt_xy=prompt, width_px=width, box_xyxy=(x, y, x + w - 1, y + h - 1),
                                touches_border=touches, area_px=int(stats[i, cv2.CC_STAT_AREA])))
        out[y:y + h, x:x + w][region] = len(features)
    return Discovery(features, pol, out, scale, ratios)
