"""The one place where (x, y) points and (row, col) indices are converted.

The dataset format, prompts, contours and SAM2 use points ``(x = column, y = row)``
with pixel centres at integers; numpy indexing and scikit-image's ``find_contours``
use ``(row, col)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["xy_to_rc", "rc_to_xy", "pixel_of_point", "point_in_image", "polygon_area"]


def xy_to_rc(points_xy: np.ndarray) -> np.ndarray:
    """(N, 2) points (x, y) to (N, 2) coordinates (row, col)."""
    return np.asarray(points_xy, dtype=float)[..., ::-1].copy()


def rc_to_xy(points_rc: np.ndarray) -> np.ndarray:
    """(N, 2) coordinates (row, col) to (N, 2) points (x, y)."""
    return np.asarray(points_rc, dtype=float)[..., ::-1].copy()


def pixel_of_point(point_xy: tuple[float, float]) -> tuple[int, int]:
    """Index ``(row, col)`` of the pixel whose centre is nearest to a point (x, y)."""
    x, y = point_xy
    return int(np.floor(float(y) + 0.5)), int(np.floor(float(x) + 0.5))


def point_in_image(point_xy: tuple[float, float], shape: tuple[int, ...]) -> bool:
    """Whether a point (x, y) falls on a pixel of an image of ``shape`` (rows, cols)."""
    r, c = pixel_of_point(point_xy)
    return 0 <= r < shape[0] and 0 <= c < shape[1]


def polygon_area(points_xy: np.ndarray) -> float:
    """Area enclosed by a closed polygon of (K, 2) points (x, y), by the shoelace formula (unsigned)."""
    p = np.asarray(points_xy, dtype=float).reshape(-1, 2)
    return float(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))
