"""SEM imaging: from the printed resist pattern to a CD-SEM image.

Stages, each a function: resist topography, secondary-electron signal with the edge
effect and material contrast, beam blur, shot noise with frame averaging, scan-line
noise and charging drift, and the detector's digitisation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "topography",
    "secondary_electron_signal",
    "beam_blur",
    "shot_noise",
    "scan_line_noise",
    "charging_drift",
    "digitize",
]


def topography(resist: np.ndarray, *, sidewall_nm: float, pixel_size_nm: float) -> np.ndarray:
    """Resist height (0 substrate .. 1 resist top), with sloped sidewalls of width ``sidewall_nm``."""
    return ndi.gaussian_filter(resist.astype(np.float64), sidewall_nm / pixel_size_nm, mode="nearest")


def secondary_electron_signal(
    height: np.ndarray,
    *,
    substrate: float,
    material_contrast: float,
    edge_gain: float,
    sidewall_nm: float,
    pixel_size_nm: float,
) -> np.ndarray:
    """Secondary-electron yield of the surface.

    The yield is the material's (substrate, or substrate plus ``material_contrast`` on
    resist) plus the edge effect: on a tilted surface more secondary electrons escape,
    so edges shine. The edge term is the local slope normalised to 1 on a sidewall.

    Returns
    -------
    (M, N) float ndarray
    """
    gy, gx = np.gradient(height)
    slope = np.hypot(gx, gy) * np.sqrt(2 * np.pi) * (sidewall_nm / pixel_size_nm)
    # electrons escape within a few nm of the edge: a little bloom around the sidewall
    bloom = ndi.gaussian_filter(slope, 3.0 / pixel_size_nm)
    return substrate + material_contrast * height + edge_gain * (0.6 * slope + 0.6 * bloom)


def beam_blur(signal: np.ndarray, *, beam_nm: float, pixel_size_nm: float) -> np.ndarray:
    """The electron probe's finite size: a Gaussian of sigma ``beam_nm``."""
    return ndi.gaussian_filter(signal, beam_nm / pixel_size_nm, mode="nearest")


def shot_noise(signal: np.ndarray, *, electrons_per_frame: float, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson shot noise, averaged over ``frames`` frames (more frames, less noise)."""
    n = electrons_per_frame * frames
    return rng.poisson(np.clip(signal, 0, None) * n) / n


def scan_line_noise(image: np.ndarray, *, offset_sigma: float, jitter_px: float, rng: np.random.Generator) -> np.ndarray:
    """Row-wise raster artefacts: a brightness offset and a sub-pixel shift per scan line."""
    rows, cols = image.shape
    offsets = rng.normal(0.0, offset_sigma, size=(rows, 1))
    if jitter_px > 0:
        x = np.arange(cols, dtype=np.float64)
        shifts = rng.normal(0.0, jitter_px, size=rows)
        image = np.stack([np.interp(x + s, x, row) for s, row in zip(shifts, image)])
    return image + offsets


def charging_drift(image: np.ndarray, *, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Charging: brightness drifting over the frame time (down the rows) and slowly across it."""
    rows, cols = image.shape
    t = np.linspace(0.0, 1.0, rows)[:, None]
    drift = 1.0 + strength * (np.exp(-3.0 * t) - 0.5)
    low = ndi.gaussian_filter(rng.standard_normal((rows // 16 + 1, cols // 16 + 1)), 2.0)
    low = ndi.zoom(low / (low.std() + 1e-12), (rows / low.shape[0], cols / low.shape[1]), order=1)[:rows, :cols]
    return image * drift + 0.15 * strength * low


def digitize(image: np.ndarray, *, bit_depth: int = 8, gain: float = 0.8, offset: float = 0.08) -> np.ndarray:
    """Detector gain and offset, clipped and quantised to ``bit_depth`` bits (8 or 16)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"Invalid bit_depth {bit_depth!r}: expected 8 or 16")
    top = 255 if bit_depth == 8 else 65535
    scaled = np.clip(offset + gain * image, 0.0, 1.0) * top
    return np.round(scaled).astype(np.uint8 if bit_depth == 8 else np.uint16)
