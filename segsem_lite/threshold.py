"""Sauvola adaptive thresholding: the fallback (and standard) path of SegSEM.

References
----------
J. Sauvola and M. Pietikainen, "Adaptive document image binarization",
Pattern Recognition 33(2), 225-236, 2000.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import FallbackConfig, nm_to_px
from .coords import pixel_of_point, point_in_image
from .errors import SegSEMError

__all__ = ["to_unit_float", "sauvola_threshold", "sauvola_mask", "component_at", "fallback_mask", "MIN_IMAGE_SIDE"]

#: Smallest image side (px) the pipeline accepts.
MIN_IMAGE_SIDE = 8


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """An 8- or 16-bit (or float) image as float32 in [0, 1] (integers divided by their dtype's maximum)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise SegSEMError(f"image of shape {img.shape}: expected a 2-D grayscale image")
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    return img.astype(np.float32)


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
    mean = cv2.boxFilter(img, cv2.CV_32F, (w, w), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(img * img, cv2.CV_32F, (w, w), borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.clip(sq - mean * mean, 0, None))
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


def _polarity_at(img: np.ndarray, point_xy: tuple[float, float], window_px: int) -> str:
    r, c = pixel_of_point(point_xy)
    rad = 3
    local = img[max(0, r - rad): r + rad + 1, max(0, c - rad): c + rad + 1].mean()
    half = window_px // 2
    around = img[max(0, r - half): r + half + 1, max(0, c - half): c + half + 1].mean()
    return "bright" if local >= around else "dark"


def fallback_mask(
    image: np.ndarray,
    prompt_xy: tuple[float, float],
    *,
    config: FallbackConfig = FallbackConfig(),
    pixel_size_nm: float = 1.0,
) -> np.ndarray:
    """The fallback path: the Sauvola component at the prompt.

    Light Gaussian denoising, polarity chosen at the prompt (SEM features show bright
    edges; holes are dark), Sauvola thresholding with the window scaled by the pixel
    size, then the connected component at (or nearest to) the prompt.

    Parameters
    ----------
    image : (M, N) ndarray
        8- or 16-bit grayscale SEM image.
    prompt_xy : (float, float)
        Prompt point (x, y) in pixels.
    config : FallbackConfig
    pixel_size_nm : float

    Returns
    -------
    (M, N) bool ndarray
        Empty when no feature lies within ``config.search_radius_nm`` of the prompt, or
        when the component found covers more than ``config.max_area_fraction`` of the
        image (the prompt is on the background).

    Raises
    ------
    SegSEMError
        If the prompt lies outside the image.
    """
    img = to_unit_float(image)
    if not point_in_image(prompt_xy, img.shape):
        raise SegSEMError(f"prompt (x={prompt_xy[0]:g}, y={prompt_xy[1]:g}) is outside the image of "
                          f"{img.shape[1]}x{img.shape[0]} px")
    sigma = nm_to_px(config.denoise_sigma_nm, pixel_size_nm)
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    window = _odd(nm_to_px(config.window_nm, pixel_size_nm))
    polarity = config.polarity if config.polarity != "auto" else _polarity_at(img, prompt_xy, window)
    fg = sauvola_mask(img, window_nm=config.window_nm, k=config.k, r=config.r,
                      pixel_size_nm=pixel_size_nm, polarity=polarity)
    comp = component_at(fg, prompt_xy, search_radius_px=nm_to_px(config.search_radius_nm, pixel_size_nm))
    if np.count_nonzero(comp) > config.max_area_fraction * comp.size:
        comp[:] = False  # the background, not a feature
    return comp
