"""Overlay pictures: contours and prompts drawn on the SEM image, as an RGB array."""

from __future__ import annotations

import cv2
import numpy as np

from .threshold import to_unit_float

__all__ = ["overlay_image", "SOURCE_COLOURS"]

#: RGB colour of a contour by the source of its mask.
SOURCE_COLOURS = {"sam2": (0, 200, 255), "fallback": (255, 140, 0), "standard": (255, 60, 60), "truth": (60, 255, 60)}


def overlay_image(image: np.ndarray, contours: list[np.ndarray], *, prompt_xy: tuple[float, float] | None = None,
                  colour: tuple[int, int, int] = (255, 60, 60), truth: list[np.ndarray] | None = None,
                  scale: int = 1) -> np.ndarray:
    """Draw contours (x, y px) and a prompt on a grayscale image.

    Parameters
    ----------
    image : (M, N) ndarray or (M, N, 3) uint8 ndarray
        Grey, or an overlay already drawn (more contours go on top of it).
    contours : list of (K, 2) ndarray
        Points (x, y) in pixels.
    prompt_xy : (float, float), optional
    colour : (r, g, b)
    truth : list of (K, 2) ndarray, optional
        Ground-truth contours, drawn in green beneath.
    scale : int
        Upscaling factor, for sub-pixel contours to show.

    Returns
    -------
    (M * scale, N * scale, 3) uint8 ndarray
    """
    if np.ndim(image) == 3:
        rgb = np.array(image, np.uint8)
        if scale > 1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    else:
        gray = (np.clip(to_unit_float(image), 0, 1) * 255).astype(np.uint8)
        if scale > 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        rgb = np.repeat(gray[..., None], 3, axis=2).copy()

    def draw(cs, col):
        pts = [np.round((np.asarray(c) + 0.5) * scale - 0.5).astype(np.int32).reshape(-1, 1, 2) for c in cs if len(c)]
        if pts:
            cv2.polylines(rgb, pts, isClosed=True, color=tuple(int(v) for v in col), thickness=1, lineType=cv2.LINE_AA)

    if truth:
        draw(truth, SOURCE_COLOURS["truth"])
    draw(contours, colour)
    if prompt_xy is not None:
        x, y = (np.asarray(prompt_xy) + 0.5) * scale - 0.5
        cv2.drawMarker(rgb, (int(round(x)), int(round(y))), (0, 255, 255), cv2.MARKER_CROSS, 6 * scale, 1)
    return rgb
