"""Lithography: from design coverage to the printed resist pattern.

A deliberately small model: a Gaussian optical blur whose width grows with defocus,
a dose that scales the exposure, a constant resist threshold, and correlated noise
that roughens the edges (line-edge roughness). The printed pattern is the ground
truth, so critical dimensions move with dose and focus as they do on a wafer.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["effective_blur_nm", "aerial_image", "correlated_noise", "print_pattern", "assign_instances"]


def effective_blur_nm(blur_nm: float, defocus_nm: float) -> float:
    """Optical blur sigma in nm at a focus offset: ``sqrt(blur^2 + (0.25 * defocus)^2)``."""
    return float(np.hypot(blur_nm, 0.25 * defocus_nm))


def aerial_image(coverage: np.ndarray, *, blur_nm: float, defocus_nm: float, pixel_size_nm: float) -> np.ndarray:
    """Aerial image: design coverage blurred by the optics.

    Parameters
    ----------
    coverage : (M, N) ndarray
        Fraction of each pixel covered by design features.
    blur_nm : float
        In-focus blur (Gaussian sigma) in nm, standing in for the projection lens's point spread.
    defocus_nm : float
        Focus offset; the blur grows as ``sqrt(blur^2 + (0.25 * defocus)^2)``.
    pixel_size_nm : float

    Returns
    -------
    (M, N) float ndarray in [0, 1]
    """
    sigma_nm = effective_blur_nm(blur_nm, defocus_nm)
    return ndi.gaussian_filter(coverage.astype(np.float64), sigma_nm / pixel_size_nm, mode="nearest")


def correlated_noise(shape: tuple[int, int], rng: np.random.Generator, corr_px: float) -> np.ndarray:
    """Gaussian noise with correlation length ``corr_px``, scaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), corr_px, mode="wrap")
    return field / (field.std() + 1e-12)


def print_pattern(
    aerial: np.ndarray,
    *,
    tone: str,
    dose: float,
    ler_nm: float,
    blur_nm: float,
    pixel_size_nm: float,
    rng: np.random.Generator,
    corr_nm: float = 12.0,
) -> np.ndarray:
    """Resist threshold model: where the feature prints.

    Parameters
    ----------
    aerial : (M, N) ndarray
        Aerial image of the design features.
    tone : {"line", "hole"}
        ``hole``: features are openings, printed where ``dose * aerial > 0.5`` (more dose,
        larger holes). ``line``: features are resist that stays, printed where the exposure
        of the surrounding clear area stays below threshold: ``dose * (1 - aerial) < 0.5``
        (more dose, thinner lines).
    dose : float
        Relative exposure dose (1 = nominal).
    ler_nm : float
        One-sigma line-edge roughness in nm: the noise amplitude is set so that, at an
        edge of slope ``1 / (sqrt(2 pi) * blur)``, it displaces the edge by about ``ler_nm``.
    blur_nm : float
        Optical blur sigma of the aerial image (with defocus), which sets the edge slope.
    pixel_size_nm : float
    rng : numpy.random.Generator
    corr_nm : float
        Correlation length of the roughness along the edge.

    Returns
    -------
    (M, N) bool ndarray
    """
    slope_per_px = 1.0 / (np.sqrt(2 * np.pi) * blur_nm / pixel_size_nm)
    noise = correlated_noise(aerial.shape, rng, corr_nm / pixel_size_nm) * (ler_nm / pixel_size_nm) * slope_per_px
    if tone == "hole":
        return dose * (aerial + noise) > 0.5
    if tone == "line":
        return dose * (1.0 - aerial - noise) < 0.5
    raise ValueError(f"Invalid tone {tone!r}: expected 'line' or 'hole'")


def assign_instances(printed: np.ndarray, design_labels: np.ndarray, *, min_px: int = 30) -> np.ndarray:
    """Split the printed pattern into instances, one per design feature.

    Each printed pixel goes to the nearest design feature; each instance keeps its
    largest connected piece. Features that did not print (or printed smaller than
    ``min_px``) get no instance.

    Returns
    -------
    (M, N) int32 ndarray
        Instance labels equal to the design labels, 0 for background.
    """
    if not design_labels.any():
        return np.zeros(printed.shape, np.int32)
    _, (ri, ci) = ndi.distance_transform_edt(design_labels == 0, return_indices=True)
    nearest = design_labels[ri, ci]
    out = np.zeros(printed.shape, np.int32)
    for label in np.unique(design_labels[design_labels > 0]):
        part = printed & (nearest == label)
        comps, n = ndi.label(part)
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        if sizes.max() >= min_px:
            out[comps == (np.argmax(sizes) + 1)] = label
    return out
