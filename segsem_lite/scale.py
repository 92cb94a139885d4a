"""What an image says about itself: the size of its features and its noise, in pixels.

The classical path takes its window, smoothing and search radius from these, so it
needs no length in nm and works from 0.5 to 20 nm per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import SegSEMError

__all__ = ["ImageScale", "measure_scale", "to_unit_float"]


@dataclass(frozen=True)
class ImageScale:
    """Feature scale and noise of one image.

    Attributes
    ----------
    feature_px : float
        Characteristic feature size in px: the first zero of the radially averaged
        autocorrelation of the image without its slow background. About the width of a
        line (or the diameter of a hole) for dense patterns, larger for sparse ones.
    noise : float
        Standard deviation of the pixel noise, in the image's unit range [0, 1]
        (from the median absolute difference of horizontal neighbours).
    contrast : float
        Spread of the smoothed image (its 2nd to 98th percentile), same unit.
    """

    feature_px: float
    noise: float
    contrast: float

    @property
    def snr(self) -> float:
        """Contrast over noise of single pixels."""
        return self.contrast / self.noise if self.noise > 0 else float("inf")


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """An 8- or 16-bit (or float) image as float32 in [0, 1] (integers divided by their dtype's maximum)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise SegSEMError(f"image of shape {img.shape}: expected a 2-D grayscale image")
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    return img.astype(np.float32, copy=False)


def measure_scale(image: np.ndarray, *, min_px: float = 4.0) -> ImageScale:
    """Measure an image's feature scale, noise and contrast.

    Parameters
    ----------
    image : (M, N) ndarray
        8- or 16-bit (or float) grayscale image.
    min_px : float
        Smallest feature scale returned.

    Returns
    -------
    ImageScale

    Notes
    -----
    The image is lightly smoothed (sigma 1 px), its slow background (a Gaussian of an
    eighth of the image side) is removed, and the autocorrelation is taken with one
    FFT. Periodic patterns give a zero near a quarter of the period, isolated features
    near their size. The result is clipped to ``[min_px, min(M, N) / 2]``.
    """
    img = to_unit_float(image)
    rows, cols = img.shape
    if min(rows, cols) < 4:
        return ImageScale(feature_px=float(min_px), noise=0.0, contrast=0.0)
    dx = np.diff(img, axis=1)
    noise = float(np.median(np.abs(dx - np.median(dx))) / 0.6745 / np.sqrt(2.0))
    # large images: the scale of a downsampled copy (at most about 256 px a side), scaled back
    factor = max(1, int(np.ceil(max(rows, cols) / 256)))
    small = cv2.resize(img, (cols // factor, rows // factor), interpolation=cv2.INTER_AREA) if factor > 1 else img
    smooth = cv2.GaussianBlur(small, (0, 0), 1.0)
    lo, hi = np.percentile(smooth, [2, 98])
    background = cv2.GaussianBlur(smooth, (0, 0), max(small.shape) / 8.0)
    f = smooth - background
    f = f - f.mean()
    spec = np.abs(np.fft.rfft2(f)) ** 2
    ac = np.fft.fftshift(np.fft.irfft2(spec, s=f.shape))
    cy, cx = np.array(ac.shape) // 2
    yy, xx = np.indices(ac.shape)
    r = np.hypot(yy - cy, xx - cx).astype(np.int64)
    prof = np.bincount(r.ravel(), ac.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    prof = prof / prof[0] if prof[0] > 0 else prof
    below = np.flatnonzero(prof[: min(small.shape) // 2] < 0)
    zero = float(below[0]) if len(below) else min(small.shape) / 2.0
    feature = float(np.clip(zero * factor, min_px, max(min_px, min(rows, cols) / 2.0)))
    return ImageScale(feature_px=feature, noise=noise, contrast=float(hi - lo))
