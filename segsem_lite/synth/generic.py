"""A generic, non-SEM corpus for pretraining the small SAM2 ("mini-foundation").

Simple learnable scenes standing in for natural images: flat, gradient or smooth-noise
backgrounds; 1 to 6 shapes (ellipses, convex and star polygons, rectangles, smooth blobs)
of 20 to 150 px, about 20% nested inside another (so a point is ambiguous between the
part and the whole, which SAM2's three outputs learn); fill levels kept apart from what
lies beneath; light texture, blur and noise. Grayscale, like SEM images, but nothing
else SEM-like: no edge effect, no resist, no scan lines.

Two versions of the scene rules (``version``):

- 1, used by mini-foundation's stages 1 to 3: a fill is kept apart only from the median
  of what lies beneath the new shape. A shape could then take the level of a neighbour it
  touches (no visible boundary between them), and a later shape could cut an earlier one
  in two, leaving a visible piece outside its label.
- 2, the default: a fill is kept apart from every region the shape covers or touches, and
  a shape that would cut an earlier one into pieces, or leave it a sliver, is not placed.
  Every labelled object's boundary is then visible and its visible part is one region.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = ["GENERIC_VERSIONS", "make_generic", "write_generic_dataset"]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(3)
    base = rng.uniform(0.1, 0.9)
    if kind == 0:
        return np.full((size, size), base)
    if kind == 1:
        yy, xx = np.mgrid[:size, :size] / size
        a, b = rng.uniform(-0.4, 0.4, 2)
        return np.clip(base + a * (xx - 0.5) + b * (yy - 0.5), 0, 1)
    noise = ndi.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(8, 30))
    return np.clip(base + 0.15 * noise / (noise.std() + 1e-9), 0, 1)


def _shape_mask(rng: np.random.Generator, size: int, center, radius: float) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cx, cy = center
    kind = rng.integers(5)
    if kind == 0:  # ellipse
        axes = (int(radius), int(radius * rng.uniform(0.4, 1.0)))
        cv2.ellipse(m, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:  # rotated rectangle
        box = cv2.boxPoints(((cx, cy), (2 * radius, 2 * radius * rng.uniform(0.3, 1.0)), float(rng.uniform(0, 90))))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 1)
    elif kind in (2, 3):  # convex or star polygon
        n = int(rng.integers(3, 9)) * (1 if kind == 2 else 2)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = radius * (rng.uniform(0.7, 1.0, n) if kind == 2 else np.where(np.arange(n) % 2, 0.45, 1.0))
        pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    else:  # smooth blob
        field = ndi.gaussian_filter(rng.standard_normal((size, size)), radius / 3)
        yy, xx = np.mgrid[:size, :size]
        d = np.hypot(xx - cx, yy - cy) / radius
        m = ((field / (field.std() + 1e-9)) * 0.5 + 1.0 - d > 0).astype(np.uint8)
        lab, n = ndi.label(m)
        if n:
            m = (lab == lab[int(np.clip(cy, 0, size - 1)), int(np.clip(cx, 0, size - 1))]).astype(np.uint8)
            if not m.any():
                m = (lab == 1).astype(np.uint8)
    return m.astype(bool)


GENERIC_VERSIONS = (1, 2)
_MIN_LEVEL_GAP = 0.18
_MIN_VISIBLE_PX = 60


def _fill_level(rng, img, labels, m, version: int) -> float | None:
    """A fill level kept apart from what the shape covers (v1) or covers and touches (v2)."""
    if version == 1:
        under = float(np.median(img[m]))
        level = rng.uniform(0.05, 0.95)
        while abs(level - under) < _MIN_LEVEL_GAP:
            level = rng.uniform(0.05, 0.95)
        return level
    zone = ndi.binary_dilation(m, iterations=2)
    near = [float(np.median(img[zone & (labels == r)])) for r in np.unique(labels[zone])]
    for _ in range(50):
        level = rng.uniform(0.05, 0.95)
        if all(abs(level - v) >= _MIN_LEVEL_GAP for v in near):
            return level
    return None


def _cuts_an_object(labels, m) -> bool:
    """Would covering ``m`` split an earlier object into pieces or leave it a sliver?"""
    for j in np.unique(labels[m]):
        if j == 0:
            continue
        rest = (labels == j) & ~m
        if not rest.any():
            continue
        comp, nc = ndi.label(rest)
        sizes = np.sort(np.bincount(comp.ravel())[1:])
        if sizes[-1] < _MIN_VISIBLE_PX or (nc > 1 and sizes[-2] >= 5):
            return True
    return False


def make_generic(seed, *, size: int = 256, version: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """One generic scene: an 8-bit grayscale image and its instance labels (visible parts).

    ``version`` selects the scene rules (see the module's docs); 2 is the default.
    """
    if version not in GENERIC_VERSIONS:
        raise ValueError(f"generic scene version {version!r}: expected one of {GENERIC_VERSIONS}")
    rng = np.random.default_rng(seed)
    img = _background(rng, size)
    labels = np.zeros((size, size), np.int32)
    n = int(rng.integers(1, 7))
    placed: list[tuple[float, float, float]] = []
    for k in range(1, n + 1):
        nested = placed and rng.random() < 0.2
        if nested:
            px, py, pr = placed[int(rng.integers(len(placed)))]
            r = pr * rng.uniform(0.3, 0.55)
            c = (px + rng.uniform(-0.3, 0.3) * pr, py + rng.uniform(-0.3, 0.3) * pr)
        else:
            r = rng.uniform(10, 75)
            c = tuple(rng.uniform(r * 0.5, size - r * 0.5, 2))
        m = _shape_mask(rng, size, c, r)
        if m.sum() < 40 or (version == 2 and _cuts_an_object(labels, m)):
            continue
        level = _fill_level(rng, img, labels, m, version)
        if level is None:
            continue
        fill = level + (rng.uniform(-0.1, 0.1) * (np.mgrid[:size, :size][1] / size - 0.5) if rng.random() < 0.3 else 0)
        if rng.random() < 0.3:
            tex = ndi.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(1, 4))
            fill = fill + 0.05 * tex / (tex.std() + 1e-9)
        img = np.where(m, fill, img)
        labels[m] = k
        placed.append((c[0], c[1], r))
    img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.2))
    img = img + rng.normal(0, rng.uniform(0.005, 0.04), img.shape)
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    # relabel visible parts; drop slivers
    out = np.zeros_like(labels)
    nxt = 1
    for k in np.unique(labels[labels > 0]):
        comp, nc = ndi.label(labels == k)
        if nc == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        if sizes.max() >= _MIN_VISIBLE_PX:
            out[comp == np.argmax(sizes) + 1] = nxt
            nxt += 1
    return image, out


def write_generic_dataset(out: str | Path, *, n: int, seed: int, size: int = 256, val_fraction: float = 0.1,
                          progress: bool = False, version: int = 2) -> Path:
    """Write ``n`` generic scenes in the dataset format (``split`` train/val in meta.csv).

    ``version`` selects the scene rules of :func:`make_generic`.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..dataset import write_image, write_mask

    out = Path(out)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    n_val = int(round(n * val_fraction))
    for i in tqdm(range(n), disable=not progress, desc="generic"):
        image, labels = make_generic([seed, i], size=size, version=version)
        stem = f"g{i:05d}"
        write_image(out / "images" / f"{stem}.png", image)
        write_mask(out / "masks" / f"{stem}.png", labels)
        rows.append({"stem": stem, "split": "val" if i < n_val else "train", "pixel_size_nm": 1.0})
    pd.DataFrame(rows).to_csv(out / "meta.csv", index=False)
    (out / "README.json").write_text(json.dumps({"generator": "segsem_lite.synth.generic", "n": n, "seed": seed,
                                                 "size": size, "version": version}))
    return out
