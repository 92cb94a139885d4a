"""Sub-pixel edge placement: the model chooses the region, the image places the edge.

A CD-SEM image shows a feature's edge as a bright ridge (the edge effect: secondary
electrons escape from the sloped sidewall), and CD-SEM metrology puts the edge at that
ridge's peak. The mask from SAM2 (logits at a quarter of its input resolution) or from
Sauvola (the dark region inside the ridge) is close to it but not on it. This step walks
along the mask's contour, reads the denoised image along each point's normal within
``search_nm``, finds the ridge peak to sub-pixel precision (a parabola through the three
samples at the maximum), smooths the offsets along the contour, and moves the contour
there. The new contour is the result; the mask is its polygon.

The peak of the ridge is not quite the edge: the material contrast adds a step under
the ridge, which pulls the peak towards the brighter side (by about half a pixel on the
synthetic images). With ``config.step_correction`` the mean profile across the contour,
aligned on the peaks, is fitted with a Gaussian ridge over a blurred step,
``B + A exp(-(u - mu)^2 / 2 s^2) + C Phi((u - mu) / s2)``, and the contour moves by the
fitted centre ``mu``. Some images brighten a band on one side of the edge instead (inside the
resist, fading away from the edge), which the beam blurs across it: its peak lies inside that
side, and the edge is its foot on the steep flank. The same profile is fitted with such a band
over the step (an exponential blurred by a Gaussian), on either side, and when it explains the
profile far better than the centred ridge does, its foot places the edge.

Not every SEM image shows an edge ridge: without edge brightening the edge is a blurred step
between two levels, and Sauvola's threshold, below the local mean for a bright feature,
puts it a pixel or two off. When the mean profile across the contour neither peaks nor
dips, each point moves to where the profile along its normal crosses the level halfway
between the feature's inside and its surroundings (the 50 % threshold of CD-SEM
metrology), smoothed along the contour as above.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import log_ndtr, ndtr, ndtri

from .config import EdgeConfig, nm_to_px
from .contours import extract_contours, fill_polygon, resample_closed
from .layout import _peak
from .metrics import iou
from .threshold import inside_depth

__all__ = ["ArrayTemplate", "EdgePlacement", "paste_mask", "place_array_template", "place_edges", "place_pooled_ring"]


@dataclass
class EdgePlacement:
    """What edge placement did to one mask.

    Attributes
    ----------
    mask : (M, N) bool ndarray
        The polygon of the placed contour (the input mask when nothing was placed).
    contours : list of (K, 2) ndarray
        Placed contours, points (x, y) in px.
    offsets_px : ndarray
        Signed move of each contour point along its outward normal (after smoothing).
    found : float
        Share of contour points where a ridge peak was found inside the search range.
    kind : {"ridge", "step", ""}
        How the contour was placed: on a ridge, at a step's half level, or not at all ("": the
        mask is returned as it was).
    """

    mask: np.ndarray
    contours: list[np.ndarray]
    offsets_px: np.ndarray
    found: float
    kind: str = ""


def _normals(points: np.ndarray, smooth: float) -> np.ndarray:
    """Unit normals of a closed polyline, from its tangent smoothed over ``smooth`` points."""
    d = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    if smooth > 0:
        d = ndi.gaussian_filter1d(d, smooth, axis=0, mode="wrap")
    n = np.stack([d[:, 1], -d[:, 0]], 1)
    return n / np.maximum(np.hypot(*n.T), 1e-9)[:, None]


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at points (..., 2) (x, y), pixel centres at integers."""
    grid = xy.reshape(-1, xy.shape[-2], 2).astype(np.float32)  # (rows, columns) maps for remap
    out = np.concatenate([
        cv2.remap(image, np.ascontiguousarray(g[..., 0]), np.ascontiguousarray(g[..., 1]),
                  interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for g in np.array_split(grid, max(1, int(np.ceil(len(grid) / 30000))))])
    return out.reshape(xy.shape[:-1])


def _ridge_offsets(profiles: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel position of each profile's maximum, and whether it lies inside the range."""
    k = profiles.argmax(axis=1)
    inside = (k > 0) & (k < len(t) - 1)
    kc = np.clip(k, 1, len(t) - 2)
    rows = np.arange(len(profiles))
    a, b, c = profiles[rows, kc - 1], profiles[rows, kc], profiles[rows, kc + 1]
    denom = a - 2 * b + c
    frac = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    return t[kc] + np.clip(frac, -0.5, 0.5) * (t[1] - t[0]), inside


def _ridge_model(u, b, a, mu, s, c, s2):
    return b + a * np.exp(-((u - mu) ** 2) / (2 * s * s)) + c * ndtr((u - mu) / s2)


def _band(v, s, lam):
    """A band ``exp(v / lam)`` on ``v < 0`` (nothing beyond 0), blurred by a Gaussian of ``s``: an exponentially
    modified Gaussian, in logs so that a band much narrower than the blur does not overflow."""
    return np.exp(v / lam + s * s / (2 * lam * lam) + log_ndtr(-v / s - s / lam))


def _band_inside(u, b, a, mu, s, c, lam):
    return b + a * _band(u - mu, s, lam) + c * ndtr((u - mu) / s)


def _band_outside(u, b, a, mu, s, c, lam):
    return b + a * _band(mu - u, s, lam) + c * ndtr((u - mu) / s)


def _step_correction(crop: np.ndarray, pts: np.ndarray, normals: np.ndarray, reach: float,
                     feature: str = "auto") -> float:
    """Edge position under the mean profile (aligned on the peaks at ``pts``), relative to the peak; 0 when no
    fit succeeds or is plausible.

    The edge brightening is fitted over a blurred material step as a ridge centred on the edge (a Gaussian: the
    sidewall's own signal), whose centre is the edge. A band on one side of the edge that fades away from it
    (brightening inside the resist, blurred across the edge by the beam) peaks inside that side, and its foot,
    on the steep flank, is the edge: it places the edge instead when it explains the profile
    :data:`BAND_FIT_MARGIN` times better than a plausible ridge fit does. When the user says what the feature
    is made of (``feature``: ``resist`` or ``opening``), only the band on the resist side is fitted, and it
    places the edge when it explains the profile :data:`KNOWN_SIDE_MARGIN` times better."""
    u = np.arange(-reach, reach + 0.25, 0.5)
    prof = _sample(crop, pts[:, None, :] + u[None, :, None] * normals[:, None, :]).mean(0)
    if len(u) < 8:  # too few samples (a coarse pixel size) for the six-parameter fit
        return 0.0
    k = int(prof.argmax())

    def fit(model, p0: list) -> tuple[np.ndarray | None, float]:
        try:
            with warnings.catch_warnings():  # an undetermined covariance is not an error: the checks judge the fit
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                p, _ = curve_fit(model, u, prof, p0=p0, maxfev=2000)
        except (RuntimeError, ValueError):
            return None, np.inf
        sse = float(np.sum((model(u, *p) - prof) ** 2))
        return p, sse if np.isfinite(sse) else np.inf

    p, sse = fit(_ridge_model, [prof[0], prof[k] - prof[0], u[k], reach / 3, prof[-1] - prof[0], reach / 6])
    if p is None or not (p[1] > 0 and abs(p[2]) <= 1.5 and 0.3 < abs(p[3]) < reach):
        return 0.0  # a ridge fit that failed is no yardstick for the band's either
    mu = float(p[2])
    bands = {"resist": (_band_inside, [prof[-1], prof[k] - prof[-1], u[k] + 0.5, 1.0, prof[0] - prof[-1], 2.0]),
             "opening": (_band_outside, [prof[0], prof[k] - prof[0], u[k] - 0.5, 1.0, prof[-1] - prof[0], 2.0])}
    margin = BAND_FIT_MARGIN if feature not in bands else KNOWN_SIDE_MARGIN
    for model, p0 in (bands.values() if feature not in bands else (bands[feature],)):
        q, band_sse = fit(model, p0)
        if (q is not None and margin * band_sse < sse and q[1] > 0 and abs(q[2]) <= MAX_BAND_SHIFT_PX
                and 0.3 < abs(q[3]) < reach and 0.3 < q[5] < reach):
            mu, sse = float(q[2]), margin * band_sse
    return mu


#: The search range is cut to the mask's half width (its largest inscribed radius), but never under this, px.
SEARCH_MIN_PX = 3.0
#: A one-sided band places the edge when its fit's squared residual is this many times smaller than the centred
#: ridge's. On the 235 mean profiles of data_samples (the physics generator: a ridge centred on the edge) the band
#: fits at most 3 times better; on 512 px images of the second renderer (seed 2024), whose brightening is a band
#: inside the resist, 14 of the 39 profiles whose ridge fit is plausible fit 4.4-39 times better with the band,
#: the rest at most 3.4 times.
BAND_FIT_MARGIN = 4.0
#: With the resist's side known, its band places the edge when it fits this many times better than the ridge.
#: data_samples (the physics generator: a ridge centred on the edge, clip_tone known), standard + edge placement:
#: IoU 0.9668 with 4 (as if unknown), 0.9664 with 2, 0.9523 with 1. Second renderer, fresh seeds 2060/2070
#: (2313 targets): 0.705 with 4, 0.707 with 2; with 1 the same few images gain 15 target-IoU units, with 2 six.
KNOWN_SIDE_MARGIN = 2.0
#: A one-sided band's foot may lie this far from the profile's peak, px.
MAX_BAND_SHIFT_PX = 3.0


#: A profile without a ridge is a clean step, whose half level places the edge, when it neither peaks nor dips
#: by this share of its range or more (a weak ridge or an edge ring is not a step).
STEP_MAX_BUMP = 0.1

#: Edge placement moves a contour by at most the search range; a placement that keeps under this IoU with the
#: mask it started from has lost the feature, not refined it, and is not used.
MIN_PLACED_IOU = 0.5


def _step_levels(crop: np.ndarray, m: np.ndarray, width: float) -> tuple[float, float, float] | None:
    """Median levels inside and outside a mask's edge zone (``width`` px each way), and the
    noise of the outside ring; None when either side has too few pixels."""
    d_in = ndi.distance_transform_edt(m)
    d_out = ndi.distance_transform_edt(~m)
    inner = m & (d_in > width)
    if inner.sum() < 4:
        inner = m & (d_in > 1)
    outer = ~m & (d_out > width) & (d_out <= 2 * width + 2)
    if inner.sum() < 2 or outer.sum() < 4:
        return None
    ring = crop[outer]
    return float(np.median(crop[inner])), float(np.median(ring)), float(1.4826 * np.median(np.abs(ring - np.median(ring))))


def _crossings(profiles: np.ndarray, t: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per profile, the crossing of ``level`` nearest to t = 0 (linear between samples), and
    whether there is one."""
    s = profiles - level
    sign = (s[:, :-1] > 0) != (s[:, 1:] > 0)
    a, b = s[:, :-1], s[:, 1:]
    frac = np.where(sign, a / np.where(sign, a - b, 1.0), 0.0)
    pos = t[:-1][None] + frac * (t[1] - t[0])
    dist = np.where(sign, np.abs(pos), np.inf)
    k = dist.argmin(axis=1)
    rows = np.arange(len(profiles))
    return pos[rows, k], np.isfinite(dist[rows, k])


def _place_steps(crop: np.ndarray, m: np.ndarray, contours: list, origin: np.ndarray, t: np.ndarray,
                 config: EdgeConfig, pixel_size_nm: float) -> EdgePlacement | None:
    """Step edges (no ridge): each contour point moves to where the denoised profile along
    its normal crosses the level halfway between the feature's inside and its surroundings
    (the 50 % threshold of CD-SEM metrology). ``crop`` is the image around the mask, at
    ``origin``, denoised at 1 px or more (and maybe negated: the half level does not care).
    None when the two levels are not apart by more than the noise, or too few points find
    the level."""
    if t[-1] < 3.0:  # at coarse pixels the search in nm spans under a pixel: the level is looked for 3 px each way
        t = np.arange(-12, 13) * 0.25
    r0, c0 = int(origin[1]), int(origin[0])
    width = float(np.clip(t[-1] / 2, 2.0, 4.0))
    levels = _step_levels(crop, m[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]], width)
    if levels is None or abs(levels[0] - levels[1]) <= 2.0 * levels[2]:
        return None
    level = 0.5 * (levels[0] + levels[1])
    rows, cols = m.shape

    def locate(pts: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets, ok = _crossings(_sample(crop, pts[:, None, :] + t[None, :, None] * normals[:, None, :] - origin),
                                 t, level)
        # a contour along the image's border is the field's edge, not the feature's: it stays
        border = _on_border(pts, rows, cols)
        offsets[border], ok[border] = 0.0, True
        return offsets, ok

    def finish(pts: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        offsets[_on_border(pts, rows, cols)] = 0.0
        return offsets

    placed, offsets, found = _move_contours(m, contours, locate, finish, config, pixel_size_nm)
    if not placed or found < config.min_found:
        return None
    out = _fill_placed(placed, m.shape)
    if not out.any():
        return None
    return EdgePlacement(out, sorted(placed, key=lambda c: -len(c)), offsets, found, "step")


def _on_border(pts: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Contour points (x, y) on the image's outermost pixels."""
    return (pts[:, 0] < 0.75) | (pts[:, 1] < 0.75) | (pts[:, 0] > cols - 1.75) | (pts[:, 1] > rows - 1.75)


def _move_contours(m: np.ndarray, contours: list, locate, finish, config: EdgeConfig,
                   pixel_size_nm: float) -> tuple[list, np.ndarray, float]:
    """Move each contour of mask ``m`` along its outward normals: ``locate(pts, normals)`` gives
    each point's offset and whether it found an edge, the offsets are smoothed along the contour,
    ``finish(pts, normals, offsets)`` adjusts them, and ``config.offset_nm`` is added. Returns the
    moved closed contours, their offsets and the share of points that found an edge."""
    placed, all_offsets, n_found, n_points = [], [], 0, 0
    for contour in contours:
        pts = resample_closed(contour, step=1.0)
        if len(pts) < 8:
            continue
        normals = _outward(pts, m)  # a hole's contour too: out of the mask
        offsets, ok = locate(pts, normals)
        n_found += int(ok.sum())
        n_points += len(ok)
        if ok.sum() < 3:
            continue
        offsets = finish(pts, normals, _smooth_offsets(offsets, ok, config, pixel_size_nm))
        new = pts + (offsets + nm_to_px(config.offset_nm, pixel_size_nm))[:, None] * normals
        placed.append(np.vstack([new, new[:1]]))
        all_offsets.append(offsets)
    return placed, np.concatenate(all_offsets) if all_offsets else np.zeros(0), n_found / n_points if n_points else 0.0


def _fill_placed(placed: list, shape: tuple[int, int]) -> np.ndarray:
    """The mask of moved contours: outer contours add, contours of holes (normals flipped) were moved alike."""
    out = np.zeros(shape, bool)
    for poly in placed:
        out ^= fill_polygon(poly[:-1], shape)
    return out


def _outward(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Unit normals of a closed contour of mask ``m``, pointing out of the mask."""
    normals = _normals(pts, smooth=2.0)
    probe = pts + 2.0 * normals
    inside = m[np.clip(np.round(probe[:, 1]).astype(int), 0, m.shape[0] - 1),
               np.clip(np.round(probe[:, 0]).astype(int), 0, m.shape[1] - 1)]
    return -normals if inside.mean() > 0.5 else normals


def _smooth_offsets(offsets: np.ndarray, ok: np.ndarray, config: EdgeConfig, pixel_size_nm: float) -> np.ndarray:
    """Points without an edge found take their neighbours' offsets; then a median and a Gaussian along the
    contour (``config.smooth_nm``) remove single-point noise."""
    idx = np.arange(len(offsets))
    offsets = np.interp(idx, idx[ok], offsets[ok], period=len(offsets))
    win = max(3, int(round(nm_to_px(config.smooth_nm, pixel_size_nm))) | 1)
    offsets = ndi.median_filter(offsets, size=win, mode="wrap")
    return ndi.gaussian_filter1d(offsets, win / 4.0, mode="wrap")


def _bump(prof: np.ndarray) -> float:
    """How far the profile's maximum inside the range stands above both its ends, as a share of its range
    (0 when the maximum is at an end)."""
    k = int(prof.argmax())
    span = float(prof.max() - prof.min())
    if not 0 < k < len(prof) - 1 or span <= 0:
        return 0.0
    return float(prof[k] - max(prof[0], prof[-1])) / span


def _profile_shape(crop: np.ndarray, contours: list, m: np.ndarray, t: np.ndarray,
                   origin: np.ndarray) -> tuple[float, float]:
    """The mean profile across the mask's outer contour: how much it peaks (a ridge) and dips, each as
    :func:`_bump` measures it."""
    pts = resample_closed(contours[0], step=1.0)
    if len(pts) < 8:
        return 0.0, 1.0
    normals = _outward(pts, m)
    prof = _sample(crop, pts[:, None, :] + t[None, :, None] * normals[:, None, :] - origin).mean(0)
    return _bump(prof), _bump(-prof)


def place_edges(image: np.ndarray, mask: np.ndarray, *, config: EdgeConfig = EdgeConfig(),
                pixel_size_nm: float = 1.0, feature: str | None = None) -> EdgePlacement:
    """Move a mask's contour onto the image's edge ridge, to sub-pixel precision.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw SEM image.
    mask : (M, N) bool ndarray
        The region (from the gate's accepted candidate or the fallback, refined).
    config : EdgeConfig
        Search range, denoising and smoothing, in nm.
    pixel_size_nm : float
    feature : {"resist", "opening"}, optional
        What the feature is made of, when known: edge brightening lies in the resist, so a band
        is sought on that side only (inside a resist feature, outside an opening).

    Returns
    -------
    EdgePlacement
        Without a ridge in the mean profile across the contour (``config.min_prominence``),
        a clean step (no peak, no dip) is placed at its half level (``config.step_edges``).
        With ``found`` below ``config.min_found``, a weak ridge that is not a clean step,
        or a step not above the noise, the input mask and its contours are returned
        unchanged (a featureless or very noisy image).
    """
    m = np.asarray(mask, bool)
    contours = extract_contours(m)
    unchanged = EdgePlacement(m.copy(), contours, np.zeros(0), 0.0)
    if not contours:
        return unchanged
    search = nm_to_px(config.search_nm, pixel_size_nm)
    # no further than the mask's half width: beyond it a profile crosses the feature, or reaches its neighbours
    half_width = float(inside_depth(m).max())
    search = min(search, max(SEARCH_MIN_PX, half_width))
    sigma = nm_to_px(config.denoise_sigma_nm, pixel_size_nm)
    step = 0.25
    t = np.arange(-np.ceil(search / step), np.ceil(search / step) + 1) * step
    rows, cols = np.nonzero(m)
    pad = int(np.ceil(2 * search + nm_to_px(6.0, pixel_size_nm) + 3 * sigma + 2))
    r0, c0 = max(0, rows.min() - pad), max(0, cols.min() - pad)
    r1, c1 = min(m.shape[0], rows.max() + pad + 1), min(m.shape[1], cols.max() + pad + 1)
    raw = np.asarray(image, np.float32)[r0:r1, c0:c1]
    crop = cv2.GaussianBlur(raw, (0, 0), sigma) if sigma > 0 else raw
    if config.polarity == "dark_edge":
        crop = -crop
    origin = np.array([c0, r0], float)
    peak, dip = _profile_shape(crop, contours, m, t, origin)
    if config.min_prominence > 0 and peak < config.min_prominence:
        # no ridge: a clean step (neither peak nor dip) is placed at its half level, anything else is left alone
        if not config.step_edges or max(peak, dip) >= STEP_MAX_BUMP:
            return unchanged
        # the half level wants at least 1 px of denoising: the crop has it already, or is made again
        steps = crop if sigma >= 1.0 else cv2.GaussianBlur(raw, (0, 0), 1.0)
        return _kept(_place_steps(steps, m, contours, origin, t, config, pixel_size_nm), m) or unchanged

    def locate(pts: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ridge_offsets(_sample(crop, pts[:, None, :] + t[None, :, None] * normals[:, None, :] - origin), t)

    def finish(pts: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if not config.step_correction:
            return offsets
        reach = search + nm_to_px(6.0, pixel_size_nm)
        return offsets + _step_correction(crop, pts + offsets[:, None] * normals - origin, normals, reach,
                                          feature or "auto")

    placed, offsets, found = _move_contours(m, contours, locate, finish, config, pixel_size_nm)
    if not placed or found < config.min_found:
        return EdgePlacement(m.copy(), contours, np.zeros(0), found)
    moved = EdgePlacement(_fill_placed(placed, m.shape), sorted(placed, key=lambda c: -len(c)), offsets, found, "ridge")
    return _kept(moved, m) or EdgePlacement(m.copy(), contours, np.zeros(0), found)


def _kept(placed: EdgePlacement | None, mask: np.ndarray) -> EdgePlacement | None:
    """The placement, unless it left under :data:`MIN_PLACED_IOU` of the mask it started from (edges found
    across a small, faint feature can pull its contour to nothing): None then."""
    return placed if placed is not None and iou(placed.mask, mask) >= MIN_PLACED_IOU else None


#: Pooled over an image, a ring is the profile's maximum inside the masks standing above the profile's innermost
#: level by this many standard errors of the two means...
POOL_Z = 6.0
#: ... and by this share of the profile's range at least, with the outermost level below it by half the range.
POOL_MIN_RISE = 0.05
#: A pooled ring moves the masks' edges only when its peak lies this far inside them or more, px.
POOL_MIN_SHIFT_PX = 0.5


def pooled_profile(image: np.ndarray, masks: list[np.ndarray],
                   reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mean profile across the edges of many masks of one image, by signed distance to the nearest mask's
    edge (negative inside), in half-pixel bins within ``reach``; the image as it is.

    Returns the bins' distances (each the mean of its pixels': pixel distances are not evenly spread), means,
    standard errors of the means, pixel counts, the signed distance map and the map of the nearest mask
    (1-based index into ``masks``). Bins with under 8 pixels are left out."""
    lab = np.zeros(image.shape, np.int32)
    for i, m in enumerate(masks):
        lab[m & (lab == 0)] = i + 1
    d_out, (ri, ci) = ndi.distance_transform_edt(lab == 0, return_indices=True)
    near = lab[ri, ci]
    d = np.where(lab > 0, 0.5 - ndi.distance_transform_edt(lab > 0), d_out - 0.5)
    sel = np.abs(d) <= reach
    b = np.round(d[sel] * 2).astype(np.int64)
    lo = int(b.min()) if b.size else 0
    cnt = np.bincount(b - lo)
    v = np.asarray(image, np.float64)[sel]
    mean = np.bincount(b - lo, v) / np.maximum(cnt, 1)
    var = np.maximum(np.bincount(b - lo, v * v) / np.maximum(cnt, 1) - mean ** 2, 0.0)
    ok = cnt >= 8
    u = np.bincount(b - lo, d[sel]) / np.maximum(cnt, 1)  # each bin at its pixels' mean distance
    return u[ok], mean[ok], np.sqrt(var[ok] / cnt[ok]), cnt[ok], d, near


def place_pooled_ring(image: np.ndarray, masks: list[np.ndarray], *, config: EdgeConfig = EdgeConfig(),
                      pixel_size_nm: float = 1.0) -> tuple[list[np.ndarray], float] | None:
    """Edges that no single mask shows but the image's masks show together: a faint bright ring just inside
    their contours.

    A small hole whose resist brightens at its edge (a band inside the resist) can be barely darker than that
    band: each mask from thresholding takes in the hole and its band, whose outer flank is the edge the
    threshold finds, and no single profile shows the band apart from the hole's noise. Pooled over every mask
    of the image (a CD-SEM recipe measures all features of one image alike) the mean profile across their
    contours shows it: a maximum inside the masks, standing above their inside (a pixel or more inward) by
    :data:`POOL_Z` standard errors and :data:`POOL_MIN_RISE` of the profile's range, with the outside half
    the range or more below. Its peak (parabolic, to sub-pixel) is the edge of every mask: each gives up the
    band outside it, moving in by the same distance. Returns the new masks and that distance (px), or None
    when the pooled profile shows no such ring or the peak lies less than :data:`POOL_MIN_SHIFT_PX` inside.

    The image is pooled as it is, not denoised: pooling averages the noise away, and smoothing pulls a ring
    that stands on a step towards the step's brighter side (on the second renderer's 576 holes of seed 2060
    ``ind02_002``, by 0.5 px into the holes). Even so the peak is not exactly the edge: there it lies 0.4 px
    inside the true edges; on the holes of ``tests/test_edges.py`` (a band decaying over 2 px into the resist,
    blurred by 1 px) the masks end 0.6 px outside. Fitting a band outside the edge to the pooled profile was
    tried and placed the test's holes farther off: the masks' spread around their holes widens the pooled
    profile beyond the model.
    """
    masks = [np.asarray(m, bool) for m in masks]
    if not masks or not all(m.any() for m in masks):
        return None
    reach = float(np.clip(np.median([inside_depth(m).max() for m in masks]), SEARCH_MIN_PX,
                          max(SEARCH_MIN_PX, nm_to_px(config.search_nm, pixel_size_nm))))
    u, prof, se, cnt, d, near = pooled_profile(image, masks, reach)
    if config.polarity == "dark_edge":
        prof = -prof
    if len(u) < 5:
        return None
    k = int(prof.argmax())
    span = float(prof.max() - prof.min())
    if not (0 < k < len(u) - 1) or u[k] >= 0 or span <= 0:
        return None
    inner = u <= u[k] - 1.0  # the masks' inside, a pixel or more in from the peak
    if not inner.any():
        return None
    w = cnt[inner] / cnt[inner].sum()
    level, level_se = float(np.sum(w * prof[inner])), float(np.sqrt(np.sum((w * se[inner]) ** 2)))
    if (prof[k] - level < max(POOL_Z * float(np.hypot(se[k], level_se)), POOL_MIN_RISE * span)
            or prof[k] - prof[-1] < 0.5 * span):
        return None
    q = np.polyfit(u[k - 1:k + 2], prof[k - 1:k + 2], 2)  # the peak to sub-pixel (the bins need not be evenly spaced)
    shift = float(np.clip(-q[1] / (2 * q[0]), u[k - 1], u[k + 1])) if q[0] < 0 else float(u[k])
    if shift > -POOL_MIN_SHIFT_PX:
        return None
    out = []
    for i, m in enumerate(masks):
        new = (near == i + 1) & (d < shift)
        out.append(new if new.any() else m)
    return out, shift


#: An array template is registered to each feature within this many px of its mask's centroid.
ARRAY_SEARCH_PX = 3
#: Rounds of (mean patch, registration of every feature to it).
ARRAY_ROUNDS = 3
#: The masks of an array are replaced by its template's only when their median IoU with it, as placed, is at
#: least this (the features are copies of one shape). On the second renderer's contact arrays of seeds
#: 2060-2080 it is 0.47-0.83 (masks from noisy images stray far from the shape and still overlap it).
ARRAY_MIN_AGREEMENT = 0.4


@dataclass
class ArrayTemplate:
    """The mean appearance of an image's repeated features and where each one lies (:func:`place_array_template`).

    Attributes
    ----------
    template : (2r+1, 2r+1) ndarray
        The mean patch, centred on the features.
    mask : (2r+1, 2r+1) bool ndarray
        The template's feature: the masks' majority, aligned, with edge placement on the template.
    centres : (K, 2) ndarray
        Each feature's centre (x, y) in the image, px, sub-pixel; NaN for masks not used.
    sizes_px : (K,) ndarray
        How far each feature's edges lie outward of the template's, px: measured on the feature, and shrunk
        towards 0 by the share of such measurements' variance that the noise makes (the features' sizes
        vary by ``size_spread_px``, one measurement's noise by ``size_noise_px``); NaN for masks not used.
    size_spread_px : float
        How much the features' sizes differ from each other: the standard deviation of their edges' mean
        outward offset from the template's, px, noise taken out (:func:`_size_spread`).
    size_noise_px : float
        How much the noise alone moves one feature's measured offset, px (one standard deviation).
    kind : str
        How the template's mask was placed (:attr:`EdgePlacement.kind`, "" for the majority as it was).
    """

    template: np.ndarray
    mask: np.ndarray
    centres: np.ndarray
    sizes_px: np.ndarray
    size_spread_px: float
    size_noise_px: float
    kind: str


def _patches(image: np.ndarray, centres: np.ndarray, r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(float)
    return np.stack([ndi.map_coordinates(image, [yy + cy, xx + cx], order=1, mode="nearest") for cx, cy in centres])


def _size_spread(resid: np.ndarray, template: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The spread of the features' sizes and the noise of one feature's size, px, from their residuals against
    the template, and each feature's measured size (how far out of the template's its edges lie, px).

    Each feature's edges lie outward of the template's by the projection of its residual on the template's
    outward growth (the radial derivative); measured on its top and bottom halves apart (different scan lines,
    so independent noise), the two agree on the size and differ by the noise: their covariance over the
    features is the sizes' true variance, a quarter of the variance of their difference the noise's. Each half's
    level and position are fitted with its size."""
    r = template.shape[0] // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(float)
    rho = np.hypot(xx, yy)
    gy, gx = np.gradient(template)
    grow = -(gx * xx + gy * yy) / np.maximum(rho, 1.0)  # the template's change when its edges move out by 1 px
    halves = []
    flat = resid.reshape(len(resid), -1)
    for half in (yy < 0, yy > 0):
        # the level and the position are fitted with the size, so that neither passes for it
        design = np.stack([half, gx * half, gy * half, grow * half], -1).reshape(-1, 4).astype(float)
        halves.append((np.linalg.pinv(design) @ flat.T)[3])
    top, bottom = halves
    true_var = float(np.mean((top - top.mean()) * (bottom - bottom.mean())))
    noise_var = float(np.var(top - bottom)) / 4.0
    return float(np.sqrt(max(true_var, 0.0))), float(np.sqrt(noise_var)), (top + bottom) / 2


def _refine_shift(image: np.ndarray, centres: np.ndarray, template: np.ndarray, steps: int = 2) -> np.ndarray:
    """Each centre moved by Gauss-Newton steps on ``patch = a + b * template(x - shift)``, all features at once
    (the linearised model's design is the template's, shared): the sub-pixel shift that the correlation's
    parabola only approximates."""
    r = template.shape[0] // 2
    gy, gx = np.gradient(template)
    design = np.stack([np.ones(template.size), template.ravel(), -gx.ravel(), -gy.ravel()], 1)
    solve = np.linalg.pinv(design)
    c = centres.copy()
    for _ in range(steps):
        coef = solve @ _patches(image, c, r).reshape(len(c), -1).T
        b = np.where(np.abs(coef[1]) > 1e-12, coef[1], np.nan)
        shift = np.clip(np.nan_to_num(np.stack([coef[2] / b, coef[3] / b], 1)), -1.0, 1.0)
        c = c + shift
    return c


def _register(image: np.ndarray, centres: np.ndarray, template: np.ndarray, k: int) -> np.ndarray:
    """Each centre moved to where the template correlates best with the image (normalised, within k px;
    parabolic to sub-pixel)."""
    r = template.shape[0] // 2
    t = template - template.mean()
    tn = float(np.sqrt((t * t).sum())) + 1e-12
    yy, xx = np.mgrid[-r - k:r + k + 1, -r - k:r + k + 1].astype(float)
    side = 2 * r + 1
    out = np.empty_like(centres)
    for j, (cx, cy) in enumerate(centres):
        big = ndi.map_coordinates(image, [yy + cy, xx + cx], order=1, mode="nearest")
        num = cv2.matchTemplate(big.astype(np.float32), t.astype(np.float32), cv2.TM_CCORR)
        s1 = cv2.boxFilter(big, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
        s2 = cv2.boxFilter(big * big, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
        lo = side // 2
        s1, s2 = s1[lo:lo + 2 * k + 1, lo:lo + 2 * k + 1], s2[lo:lo + 2 * k + 1, lo:lo + 2 * k + 1]
        sc = num / (np.sqrt(np.maximum(s2 - s1 * s1 / side ** 2, 1e-12)) * tn)
        x, y, _, _ = _peak(sc, exclude_px=np.inf)
        out[j] = (cx + x - k, cy + y - k)
    return out


def place_array_template(image: np.ndarray, masks: list[np.ndarray], *, config: EdgeConfig = EdgeConfig(),
                         pixel_size_nm: float = 1.0, feature: str | None = None) -> ArrayTemplate | None:
    """The features of an array seen together: their mean patch, each one's position, and one shape for all.

    A contact array's holes or pillars are copies of one design. Each mask from thresholding a noisy image is
    that shape plus the noise's doing (merged neighbours, bites, a core without its edge band), and no single
    profile across its edge shows where the edge is. Averaged over the features, registered to each other, the
    image shows it: the patches around the masks' centroids are averaged into a template, each feature is
    registered to the template (normalised cross-correlation within :data:`ARRAY_SEARCH_PX`, its peak to
    sub-pixel), :data:`ARRAY_ROUNDS` times, then moved by Gauss-Newton steps on the same model
    (:func:`_refine_shift`), :data:`ARRAY_ROUNDS` times more. The masks, aligned the same way, vote for the template's feature (the majority
    of them), and edge placement (:func:`place_edges`, with ``feature``) places its edge on the template, whose
    noise is the image's over the square root of the number of features.

    Each feature keeps its own size as far as the image shows it: how far its edges lie out of the template's
    is measured on it and shrunk towards the template's by the share of the noise in such measurements
    (:func:`_size_spread`; ``sizes_px``). Returns None when fewer than ``config.pool_targets`` masks have their
    patch inside the image.
    """
    img = np.asarray(image, np.float64)
    masks = [np.asarray(m, bool) for m in masks]
    areas = np.array([m.sum() for m in masks], float)
    if not len(masks) or not (areas > 0).all():
        return None
    r = int(np.ceil(2.0 * np.sqrt(np.median(areas) / np.pi))) + 2
    k = ARRAY_SEARCH_PX
    centres = np.array([(np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()) for m in masks])
    h, w = img.shape
    room = r + k + 1

    def inside(c: np.ndarray) -> np.ndarray:
        return (c[:, 0] >= room) & (c[:, 0] < w - room) & (c[:, 1] >= room) & (c[:, 1] < h - room)

    use = inside(centres)
    if use.sum() < max(1, config.pool_targets):
        return None
    c = centres[use]
    for _ in range(ARRAY_ROUNDS):
        c = _register(img, c, _patches(img, c, r).mean(0), k)
    for _ in range(ARRAY_ROUNDS):
        c = _refine_shift(img, c, _patches(img, c, r).mean(0))
    ok = inside(c)
    c = c[ok]
    idx = np.flatnonzero(use)[ok]
    if len(c) < max(1, config.pool_targets):
        return None
    p = _patches(img, c, r)
    template = p.mean(0)
    spread, noise, sizes = _size_spread(p - template, template)
    # each feature's size shrunk towards the template's by the share of its variance that is the sizes' own
    # (what the noise leaves of it is not the feature's)
    sizes = sizes * (spread ** 2 / (spread ** 2 + noise ** 2) if spread > 0 else 0.0)
    vote = np.mean([_patches(masks[i].astype(float), c[j:j + 1], r)[0] for j, i in enumerate(idx)], 0) > 0.5
    lab, _ = ndi.label(vote)
    if not lab[r, r]:
        return None
    vote = lab == lab[r, r]
    placed = place_edges(template, vote, config=config, pixel_size_nm=pixel_size_nm, feature=feature)
    out, grow = np.full((len(masks), 2), np.nan), np.full(len(masks), np.nan)
    out[idx], grow[idx] = c, sizes
    return ArrayTemplate(template, placed.mask, out, grow, spread, noise, placed.kind)


def paste_mask(mask: np.ndarray, centre_xy: tuple[float, float], shape: tuple[int, int],
               grow_px: float = 0.0) -> np.ndarray:
    """A template's mask (centred in its square) placed at ``centre_xy`` (sub-pixel) in an image of ``shape``,
    its edges moved outward by ``grow_px`` (inward when negative)."""
    m = np.asarray(mask, bool)
    r = m.shape[0] // 2
    # signed distance to the mask's edge (positive outside), sub-pixel near it: the mask blurred by a Gaussian of
    # 1 px is Phi(-distance) across a straight edge, so the staircase of pixels grows smoothly (within 3 px)
    signed = -ndtri(np.clip(ndi.gaussian_filter(m.astype(float), 1.0), 1e-3, 1 - 1e-3))
    cx, cy = centre_xy
    ix, iy = int(np.floor(cx)), int(np.floor(cy))
    moved = ndi.shift(signed, (cy - iy, cx - ix), order=1, mode="nearest") < grow_px
    out = np.zeros(shape, bool)
    y0, x0 = iy - r, ix - r
    ys, xs = slice(max(0, y0), min(shape[0], y0 + 2 * r + 1)), slice(max(0, x0), min(shape[1], x0 + 2 * r + 1))
    out[ys, xs] = moved[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out
