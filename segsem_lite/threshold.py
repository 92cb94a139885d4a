"""Sauvola adaptive thresholding: the fallback (and standard) path of SegSEM.

References
----------
J. Sauvola and M. Pietikainen, "Adaptive document image binarization",
Pattern Recognition 33(2), 225-236, 2000.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np

from .config import FallbackConfig, nm_to_px
from .scale import ImageScale, measure_scale, to_unit_float
from .coords import pixel_of_point, point_in_image
from .errors import SegSEMError

__all__ = ["to_unit_float", "sauvola_threshold", "sauvola_mask", "component_at", "fallback_mask", "denoise_for_threshold",
           "MIN_IMAGE_SIDE"]

#: Smallest image side (px) the pipeline accepts.
MIN_IMAGE_SIDE = 8


def _local_mean_std(img: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation in a ``window`` square around each pixel (box filters, reflected border)."""
    mean = cv2.boxFilter(img, cv2.CV_32F, (window, window), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(img * img, cv2.CV_32F, (window, window), borderType=cv2.BORDER_REFLECT)
    return mean, np.sqrt(np.clip(sq - mean * mean, 0, None))


def _smoothed_unit(crop: np.ndarray, sigma: float, step: int = 1) -> tuple[np.ndarray, float]:
    """A crop smoothed by ``sigma`` px and stretched so its 1st-99th percentiles (read every ``step`` px) span [0, 1].

    Returns the stretched crop and the stretch factor (for scaling a noise level alike).
    """
    sm = cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma > 0 else crop
    lo, hi = np.percentile(sm[::step, ::step], [1, 99])
    stretch = 1.0 / max(float(hi - lo), 1e-6)
    return (sm - np.float32(lo)) * np.float32(stretch), stretch


def denoise_for_threshold(unit: np.ndarray, scale: ImageScale | None = None, *,
                          config: FallbackConfig = FallbackConfig()) -> tuple[np.ndarray, ImageScale]:
    """The image the classical path thresholds, and its scale.

    A noisy image (contrast-to-noise ratio of single pixels under ``config.nlm_below_snr``)
    is denoised by non-local means (5 px patches searched within 6 px, strength
    ``config.nlm_h`` noise deviations): repeated texture along edges and across a pattern
    averages out where a Gaussian would blur the edges. Its scale is measured again on the
    denoised copy. Other images come back as they are.

    Parameters
    ----------
    unit : (M, N) float ndarray
        The image in [0, 1] (:func:`to_unit_float`).
    scale : ImageScale, optional
        Its measured scale (measured when not given).

    Returns
    -------
    (ndarray, ImageScale)
    """
    scale = scale if scale is not None else measure_scale(unit)
    if not (scale.noise > 0 and scale.snr < config.nlm_below_snr):
        return unit, scale
    from skimage.restoration import denoise_nl_means

    out = denoise_nl_means(np.asarray(unit, np.float64), h=config.nlm_h * scale.noise, sigma=scale.noise,
                           patch_size=5, patch_distance=6, fast_mode=True).astype(np.float32)
    return out, measure_scale(out)


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def sauvola_threshold(image: np.ndarray, *, window_px: int, k: float = 0.2, r: float | None = None) -> np.ndarray:
    """Sauvola's local threshold ``T = m * (1 + k * (s / R - 1))``.

    ``m`` and ``s`` are the mean and standard deviation in a ``window_px`` square,
    computed with box filters (integral images), as ``skimage.filters.threshold_sauvola``.

    Parameters
    ----------
    image : (M, N) ndarray
        Grayscale image, float.
    window_px : int
        Odd window side in pixels.
    k : float
        Sensitivity.
    r : float, optional
        Dynamic range of the standard deviation; default half the range of the values'
        type: 0.5 for images in [0, 1].

    Returns
    -------
    (M, N) float32 ndarray
    """
    img = np.asarray(image, dtype=np.float32)
    w = _odd(window_px)
    mean, std = _local_mean_std(img, w)
    if r is None:
        r = 0.5 * (img.max() - img.min()) if img.max() > 1.0 or img.min() < 0 else 0.5
    return (mean * (1 + k * (std / r - 1))).astype(np.float32)


def sauvola_mask(
    image: np.ndarray,
    *,
    window_nm: float = 61.0,
    k: float = 0.1,
    r: float | None = None,
    pixel_size_nm: float = 1.0,
    polarity: str = "bright",
) -> np.ndarray:
    """Foreground by Sauvola thresholding, in the given polarity.

    Parameters
    ----------
    image : (M, N) ndarray
        Grayscale image (integers are scaled to [0, 1]).
    window_nm : float
        Window side in nm, converted with ``pixel_size_nm``.
    k, r : float
        Sauvola's parameters.
    pixel_size_nm : float
    polarity : {"bright", "dark"}
        ``bright``: foreground above the threshold; ``dark``: below.

    Returns
    -------
    (M, N) bool ndarray
    """
    if polarity not in ("bright", "dark"):
        raise SegSEMError(f"polarity={polarity!r}: expected 'bright' or 'dark'")
    img = to_unit_float(image)
    if polarity == "dark":  # dark features are bright features of the inverted image
        img = 1.0 - img
    return img > sauvola_threshold(img, window_px=_odd(nm_to_px(window_nm, pixel_size_nm)), k=k, r=r)


def component_at(mask: np.ndarray, point_xy: tuple[float, float], *, search_radius_px: float = 0.0) -> np.ndarray:
    """The connected component of ``mask`` at a point, or the nearest one within a radius.

    Parameters
    ----------
    mask : (M, N) bool ndarray
    point_xy : (float, float)
        Point (x, y) in pixels.
    search_radius_px : float
        When the point is on background, the nearest foreground pixel within this
        distance chooses the component.

    Returns
    -------
    (M, N) bool ndarray
        Empty when no component is near enough.
    """
    m = np.asarray(mask, dtype=np.uint8)
    n, labels = cv2.connectedComponents(m, connectivity=8)
    r, c = pixel_of_point(point_xy)
    label = labels[r, c] if 0 <= r < m.shape[0] and 0 <= c < m.shape[1] else 0
    if label == 0 and search_radius_px > 0:
        rad = int(np.ceil(search_radius_px))
        r0, r1 = max(0, r - rad), min(m.shape[0], r + rad + 1)
        c0, c1 = max(0, c - rad), min(m.shape[1], c + rad + 1)
        rr, cc = np.nonzero(labels[r0:r1, c0:c1])
        if len(rr):
            d2 = (rr + r0 - r) ** 2 + (cc + c0 - c) ** 2
            i = int(np.argmin(d2))
            if d2[i] <= search_radius_px ** 2:
                label = labels[rr[i] + r0, cc[i] + c0]
    if label == 0:
        return np.zeros(m.shape, dtype=bool)
    return labels == label


def _crop_box(shape: tuple[int, int], rc: tuple[int, int], half: int) -> tuple[int, int, int, int]:
    r, c = rc
    return max(0, r - half), min(shape[0], r + half + 1), max(0, c - half), min(shape[1], c + half + 1)


def _noise_gradient(noise: float, sigma: float) -> float:
    """Median Sobel gradient magnitude of white noise of std ``noise`` after a Gaussian of ``sigma`` px."""
    return noise * _unit_noise_gradient(round(float(sigma), 2)) + 1e-12


@lru_cache(maxsize=256)
def _unit_noise_gradient(sigma: float) -> float:
    field = np.random.default_rng(0).standard_normal((96, 96)).astype(np.float32)
    if sigma > 0:
        field = cv2.GaussianBlur(field, (0, 0), sigma)
    g = np.hypot(cv2.Sobel(field, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(field, cv2.CV_32F, 0, 1, ksize=3))
    return float(np.median(g[8:-8, 8:-8]))


def _sweep(img: np.ndarray, rc: tuple[int, int], *, window: int, sigma: float, noise: float,
           polarities: tuple[str, ...], ks: np.ndarray, max_area: float, image_border: tuple[bool, bool, bool, bool]):
    """The best Sauvola component at ``rc`` of a crop over polarities and k, by the edge under its boundary.

    Returns (mask, score, polarity, k, edge_floor) with mask None when no component qualifies.
    """
    sm, stretch = _smoothed_unit(img, sigma)  # the crop's range becomes [0, 1], and R is that range
    noise = noise * stretch
    gx = cv2.Sobel(sm, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(sm, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.hypot(gx, gy)
    floor = _noise_gradient(noise, sigma)
    mean, std = _local_mean_std(sm, window)
    # pixels of the crop's own border that are not the image's border: a region there is cut by the crop
    inner_edge = np.zeros(sm.shape, bool)
    top, bottom, left, right = image_border
    if not top:
        inner_edge[0] = True
    if not bottom:
        inner_edge[-1] = True
    if not left:
        inner_edge[:, 0] = True
    if not right:
        inner_edge[:, -1] = True
    frame = np.zeros(sm.shape, bool)
    frame[0] = frame[-1] = frame[:, 0] = frame[:, -1] = True
    kernel = np.ones((3, 3), np.uint8)
    best = (None, -1.0, "", 0.0)
    rows, cols = sm.shape
    seed = (int(rc[1]), int(rc[0]))
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    for pol in polarities:
        v, m = (sm, mean) if pol == "bright" else (1.0 - sm, 1.0 - mean)
        slope = m * (std - np.float32(1.0))  # T = m (1 + k (s/R - 1)) = m + k slope, with R = 1 (the stretched range)
        above = v - m
        last_area = -1
        for k in ks:
            fg = np.greater(above, k * slope).view(np.uint8)
            if not fg[rc]:
                continue
            filled = np.zeros((rows + 2, cols + 2), np.uint8)
            area, _, _, (x, y, w, h) = cv2.floodFill(fg, filled, seed, 1, 0, 0, flags)
            # T is monotone in k at every pixel (k sorted), so the components at the prompt are nested: an equal
            # area is the same component as before
            if area < 4 or area > max_area * fg.size or area == last_area:
                continue
            last_area = area
            # work on the component's box with a one-pixel margin (the fill mask has one more on each side)
            y0, y1, x0, x1 = max(0, y - 1), min(rows, y + h + 1), max(0, x - 1), min(cols, x + w + 1)
            c8 = filled[y0 + 1:y1 + 1, x0 + 1:x1 + 1]
            # the two pixel rows either side of the boundary, centred on the edge between them
            boundary = (cv2.dilate(c8, kernel) > 0) & ~cv2.erode(c8, kernel, borderType=cv2.BORDER_CONSTANT,
                                                                  borderValue=0).astype(bool)
            cut = boundary & frame[y0:y1, x0:x1]
            boundary &= ~frame[y0:y1, x0:x1]
            if boundary.sum() < 4:
                continue
            score = float(np.median(grad[y0:y1, x0:x1][boundary]))
            if (cut & inner_edge[y0:y1, x0:x1]).any():
                score *= 0.999  # a region cut by the crop ranks just below an equal whole one
            if score > best[1]:
                comp = np.zeros((rows, cols), bool)
                comp[y0:y1, x0:x1] = c8.astype(bool)
                best = (comp, score, pol, float(k))
    return best + (floor,)


def _sigma(feature: float, scale: ImageScale, config: FallbackConfig) -> float:
    """Smoothing for a target: ``config.denoise`` feature scales (more, up to twice, on noisy images), but no
    more than the noise needs (``config.denoise_snr`` over the image's contrast-to-noise ratio)."""
    sigma = max(config.min_denoise_px, config.denoise * feature)
    if scale.snr < config.low_snr:
        sigma *= 1.0 + min(1.0, (config.low_snr - scale.snr) / config.low_snr)
    return float(max(config.min_denoise_px, min(sigma, config.denoise_snr / max(scale.snr, 1e-6))))


def _ridge_edge(comp: np.ndarray, sm: np.ndarray, reach: float, symmetry: float) -> np.ndarray:
    """Move a region's boundary onto the edge that a bright ridge along it marks, if there is one.

    The mean profile across the boundary is read by signed distance (negative inside).
    A bright ridge whose two flanks fall off alike (an edge ring, as a sloped sidewall
    gives) marks the edge at its peak. A one-sided band (brightening inside the resist
    that ends sharply at the resist edge) marks it at its steep flank's half height: the
    region grows over the band when the steep flank is beyond it, and gives the band up
    when the steep flank faces the region. No ridge (a plain step) leaves the boundary
    where the thresholding put it.
    """
    m = comp.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    d = np.where(comp, 0.5 - inside, outside - 0.5)
    near = np.abs(d) <= reach
    bins = np.round(d[near] * 2).astype(np.int64)
    lo = int(bins.min())
    counts = np.bincount(bins - lo)
    prof = np.bincount(bins - lo, sm[near]) / np.maximum(counts, 1)
    u = (np.arange(len(prof)) + lo) / 2.0
    ok = counts >= 8
    if ok.sum() < 5:
        return comp
    u, prof = u[ok], prof[ok]
    k = int(np.argmax(prof))
    if k == 0 or k == len(prof) - 1:
        return comp
    peak = prof[k]
    # each flank runs down from the peak to its first valley, not on to a neighbouring feature
    span = float(prof.max() - prof.min()) + 1e-12
    tol = 0.05 * span  # wiggles of the mean profile smaller than this do not end a flank

    def valley(step: int) -> int:
        i = best = k
        while 0 < i + step < len(prof) and prof[i + step] <= prof[best] + tol:
            i += step
            if prof[i] < prof[best]:
                best = i
        return best

    i_l, i_r = valley(-1), valley(1)
    left, right = prof[i_l], prof[i_r]
    if min(peak - left, peak - right) < max(0.2 * max(peak - left, peak - right), 0.15 * span):
        return comp  # a step (or noise), not a ridge
    flank_l, flank_r = slice(i_l, k + 1), slice(k, i_r + 1)
    half_l = u[k] - u[flank_l][prof[flank_l] <= (peak + left) / 2].max(initial=u[i_l])
    half_r = u[flank_r][prof[flank_r] <= (peak + right) / 2].min(initial=u[i_r]) - u[k]
    if max(half_l, half_r) <= symmetry * min(half_l, half_r):
        shift = float(u[k])  # an edge ring: its peak
    elif half_r < half_l:
        shift = float(u[k] + half_r)  # steep flank outward: the band belongs to the region
    else:
        shift = float(u[k] - half_l)  # steep flank inward: the band belongs to the neighbour
    if abs(shift) < 0.5:
        return comp
    return d < shift


#: Crops larger than this many pixels a side are swept at a reduced resolution first.
_LARGE_CROP = 640


def _reduction(shape: tuple[int, int], feature: float) -> int:
    """Integer downsampling for a large crop: its side to about 512 px, its features kept at 6 px or more."""
    side = max(shape)
    if side <= _LARGE_CROP:
        return 1
    return int(max(1, min(np.ceil(side / 512), feature // 6)))


def _reduced_sweep(crop: np.ndarray, rc: tuple[int, int], f: int, *, window: int, sigma: float, noise: float,
                   polarities: tuple[str, ...], ks: np.ndarray, max_area: float,
                   image_border: tuple[bool, bool, bool, bool]):
    """:func:`_sweep` on a copy ``f`` times smaller; the region comes back at full size, blocky.

    A line that crosses a large image makes the crop grow to the whole image; the sweep's
    many thresholds run on the small copy, and :func:`_full_resolution` decides the final
    region's boundary at full size with the winning threshold only.
    """
    rows, cols = crop.shape
    h, w = rows // f * f, cols // f * f
    small = cv2.resize(crop[:h, :w], (w // f, h // f), interpolation=cv2.INTER_AREA)
    rc_small = (min(rc[0] // f, small.shape[0] - 1), min(rc[1] // f, small.shape[1] - 1))
    comp, score, pol, k, floor = _sweep(small, rc_small, window=_odd(window / f), sigma=sigma / f, noise=noise / f,
                                        polarities=polarities, ks=ks, max_area=max_area, image_border=image_border)
    if comp is None:
        return comp, score, pol, k, floor
    coarse = np.zeros((rows, cols), bool)
    coarse[:h, :w] = cv2.resize(comp.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if h < rows:
        coarse[h:] = coarse[h - 1]
    if w < cols:
        coarse[:, w:] = coarse[:, w - 1:w]
    return coarse, score, pol, k, floor


def _full_resolution(crop: np.ndarray, coarse: np.ndarray, rc: tuple[int, int], f: int, *, window: int,
                     sigma: float, polarity: str, k: float) -> np.ndarray:
    """The boundary of a region found ``f`` times smaller, decided again at full size within ``f`` px of it."""
    rows, cols = crop.shape
    c8 = coarse.astype(np.uint8)
    ring = np.ones((2 * f + 1, 2 * f + 1), np.uint8)
    outer, inner = cv2.dilate(c8, ring), cv2.erode(c8, ring)
    sm, _ = _smoothed_unit(crop, sigma, step=f)
    v = sm if polarity == "bright" else 1.0 - sm
    mean, std = _local_mean_std(v, window)
    fg = (v > mean + np.float32(k) * mean * (std - np.float32(1.0))).astype(np.uint8)
    fine = inner | (fg & outer)
    if not fine[rc]:
        return coarse
    filled = np.zeros((rows + 2, cols + 2), np.uint8)
    cv2.floodFill(fine, filled, (int(rc[1]), int(rc[0])), 1, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    return filled[1:-1, 1:-1].astype(bool)


def _at_prompt(img: np.ndarray, prompt_xy, feature: float, scale: ImageScale, config: FallbackConfig,
               polarities: tuple[str, ...], extent: tuple | None = None):
    """The best component at the prompt for one feature scale, growing the crop while the crop cuts it."""
    sigma = _sigma(feature, scale, config)
    window = _odd(max(15, config.window * feature))
    ks = np.sort(np.asarray(config.k_values, dtype=np.float32))
    rows, cols = img.shape
    r, c = pixel_of_point(prompt_xy)
    half = int(max(1.5 * feature, 24))
    while True:  # the crop doubles until the component stops at its own edge, or the crop is the whole image
        r0, r1, c0, c1 = _crop_box(img.shape, (r, c), half)
        if extent is not None:  # at least where the feature was seen, with a margin of half a crop
            m = half // 2
            r0, r1 = max(0, min(r0, int(extent[1]) - m)), min(rows, max(r1, int(extent[3]) + m + 1))
            c0, c1 = max(0, min(c0, int(extent[0]) - m)), min(cols, max(c1, int(extent[2]) + m + 1))
        border = (r0 == 0, r1 == rows, c0 == 0, c1 == cols)
        whole = all(border)
        crop = img[r0:r1, c0:c1]
        f = _reduction(crop.shape, feature)
        if f == 1:
            comp, score, pol, k, floor = _sweep(crop, (r - r0, c - c0), window=window, sigma=sigma,
                                                noise=scale.noise, polarities=polarities, ks=ks,
                                                max_area=config.max_area_fraction if whole else 0.9,
                                                image_border=border)
        else:
            comp, score, pol, k, floor = _reduced_sweep(crop, (r - r0, c - c0), f, window=window, sigma=sigma,
                                                        noise=scale.noise, polarities=polarities, ks=ks,
                                                        max_area=config.max_area_fraction if whole else 0.9,
                                                        image_border=border)
        if comp is None or score < config.min_edge_ratio * floor:
            return None, None, 0.0
        ratio = score / floor
        reaches = ((comp[0].any() and not border[0]) or (comp[-1].any() and not border[1])
                   or (comp[:, 0].any() and not border[2]) or (comp[:, -1].any() and not border[3]))
        if not reaches or whole:
            break
        half *= 2
    if comp.sum() > config.max_area_fraction * comp.size and (whole or reaches):
        return None, None, 0.0
    if f > 1:
        comp = _full_resolution(crop, comp, (r - r0, c - c0), f, window=window, sigma=sigma, polarity=pol, k=k)
    return _centre(crop, comp, sigma, feature, config), (r0, r1, c0, c1), ratio


def _centre(crop: np.ndarray, comp: np.ndarray, sigma: float, feature: float, config: FallbackConfig) -> np.ndarray:
    if config.ridge_symmetry <= 0:
        return comp
    sm = cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    centred = _ridge_edge(comp, sm, reach=max(3.0, min(0.5 * feature, 20.0)), symmetry=config.ridge_symmetry)
    return centred if centred[comp].any() else comp


def inside_depth(mask: np.ndarray) -> np.ndarray:
    """Distance in px from each pixel of ``mask`` to the nearest pixel outside it, the image
    border counting as outside (0 off the mask); its maximum is the largest inscribed radius.

    Parameters
    ----------
    mask : (M, N) bool ndarray

    Returns
    -------
    (M, N) float32 ndarray
    """
    return cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]


def fallback_mask(
    image: np.ndarray,
    prompt_xy: tuple[float, float],
    *,
    config: FallbackConfig = FallbackConfig(),
    pixel_size_nm: float = 1.0,
    scale: ImageScale | None = None,
    size_px: float | None = None,
    tone: str | None = None,
    extent_xyxy: tuple | None = None,
) -> np.ndarray:
    """The fallback (and standard) path: the Sauvola component at the prompt, its tone and scale found per target.

    Sauvola's local threshold ``T = m (1 + k (s / R - 1))`` is computed over a window
    sized from the feature (``config.window`` times the feature scale) on a crop around
    the prompt, after Gaussian smoothing of ``config.denoise`` times the scale. The
    local mean removes slow drift and charging. For each polarity (features brighter or
    darker than their surroundings) and each ``k`` of ``config.k_values``, the connected
    component under the prompt is a candidate; the candidate whose boundary lies on the
    strongest image edge (median gradient magnitude along it) wins. A region that the
    crop cuts is redone on a crop twice as large.

    Parameters
    ----------
    image : (M, N) ndarray
        8- or 16-bit grayscale SEM image (raw; the smoothing is done here).
    prompt_xy : (float, float)
        Prompt point (x, y) in pixels.
    config : FallbackConfig
    pixel_size_nm : float
        Unused by the scale-free path; kept for the signature shared with the other stages.
    scale : ImageScale, optional
        The image's measured scale (:func:`segsem_lite.scale.measure_scale`); measured
        here when omitted. Pass it when segmenting many targets of one image.
    size_px : float, optional
        The target's own size in px (the short side of its design's bounding box), used
        instead of the image's feature scale.
    tone : {"bright", "dark"}, optional
        What the user knows of the feature; overrides ``config.polarity``.
    extent_xyxy : (x0, y0, x1, y1), optional
        Where the feature is known to lie (discovery's box, px): the crop covers it from
        the start, so a line across the field is seen whole.

    Returns
    -------
    (M, N) bool ndarray
        Empty when no component with an edge clearly above the noise contains the prompt
        or lies within ``config.search_radius`` feature scales of it.

    Raises
    ------
    SegSEMError
        If the prompt lies outside the image, or ``tone`` is not bright or dark.

    References
    ----------
    J. Sauvola and M. Pietikainen, "Adaptive document image binarization",
    Pattern Recognition 33(2), 225-236, 2000.
    """
    img = to_unit_float(image)
    if not point_in_image(prompt_xy, img.shape):
        raise SegSEMError(f"prompt (x={prompt_xy[0]:g}, y={prompt_xy[1]:g}) is outside the image of "
                          f"{img.shape[1]}x{img.shape[0]} px")
    if tone not in (None, "bright", "dark"):
        raise SegSEMError(f"tone={tone!r}: expected 'bright', 'dark' or None (decided from the image)")
    polarity = tone or config.polarity
    polarities = ("bright", "dark") if polarity == "auto" else (polarity,)
    if scale is None:
        scale = measure_scale(img)
    feature = max(4.0, float(size_px) if size_px else scale.feature_px)
    # the scale is measured for the whole image; where nothing stands out at it, a target may be smaller or
    # larger: the other multiples are tried in turn. A design's size comes first, but a printed feature can be
    # far from its design (or too faint at that scale): then its multiples and the image's scale follow
    scales = tuple(max(4.0, feature * f) for f in config.scale_factors)
    if size_px:  # in order, each once
        scales = tuple(dict.fromkeys((feature, *scales, max(4.0, scale.feature_px))))
    comp, box, ratio = None, None, 0.0
    for f in scales:
        comp, box, ratio = _at_prompt(img, prompt_xy, f, scale, config, polarities, extent_xyxy)
        if comp is not None:
            feature_used = f
            break
    if comp is not None and comp.sum() > config.max_area_fraction * img.size:
        comp = None  # the background, not a feature
    if comp is not None and size_px is None:
        # the target's own width (twice its largest inscribed radius) sets the scale of a last pass
        width = 2.0 * float(inside_depth(comp).max())
        if width < feature_used / 1.5 or width > feature_used * 1.5:
            again, box2, ratio2 = _at_prompt(img, prompt_xy, max(4.0, width), scale, config, polarities)
            if again is not None and ratio2 > ratio:
                comp, box = again, box2
    out = np.zeros(img.shape, bool)
    if comp is not None:
        r0, r1, c0, c1 = box
        out[r0:r1, c0:c1] = comp
        return out
    sigma = _sigma(feature, scale, config)
    window = _odd(max(15, config.window * feature))
    r, c = pixel_of_point(prompt_xy)
    # nothing under the prompt: the nearest plausible feature within the search radius
    radius = config.search_radius * feature
    if radius < 1:
        return out
    sm = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    nearest = None  # (squared distance, x, y of a point deep inside)
    for pol in polarities:
        fg = sauvola_mask(sm, window_nm=window, k=0.0, pixel_size_nm=1.0, polarity=pol)
        fg[r, c] = False  # the prompt's own component already failed
        near = component_at(fg, prompt_xy, search_radius_px=radius)
        if not near.any() or near.sum() > config.max_area_fraction * near.size:
            continue
        rr, cc = np.nonzero(near)
        d2 = float(((rr - r) ** 2 + (cc - c) ** 2).min())
        if nearest is None or d2 < nearest[0]:
            depth = inside_depth(near)
            # re-prompt deep inside the feature, not on its edge, and within twice the search radius: a region
            # that leaks far (into a background network) is deepest far away, where another feature lies
            yy, xx = np.ogrid[:near.shape[0], :near.shape[1]]
            depth[(yy - r) ** 2 + (xx - c) ** 2 > (2 * radius) ** 2] = 0
            i = int(np.argmax(depth))
            nearest = (d2, float(i % near.shape[1]), float(i // near.shape[1]))
    if nearest is not None:
        return fallback_mask(image, nearest[1:], config=replace(config, search_radius=0.0), scale=scale,
                             size_px=size_px, tone=tone)
    return out


