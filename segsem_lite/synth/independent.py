"""A second SEM appearance model, written apart from the first, for validation.

Nothing here is shared with :mod:`segsem_lite.synth`'s physics (layout, lithography,
imaging): geometry, roughness and rendering are separate code with separate
assumptions, so a method tuned on the first generator is tested on images it has not
seen the like of. What differs on purpose:

- Geometry: outlines are polygons (gratings crossing the whole field, isolated lines,
  line ends, L/T shapes, random star polygons, contact and pillar arrays), roughened
  by correlated noise along their normals and drawn with 4x supersampling.
- Feature sizes are chosen in pixels, from 8 px to half the image, at pixel sizes
  from 0.5 to 20 nm, so scale is never a constant in nm.
- Tone: features are resist (lines, pillars) or openings in resist (trenches, holes).
- Material contrast: resist from 0.05 darker to 0.2 brighter than the substrate.
- Edge brightening, when present, lies inside the resist: a band that starts at the
  resist edge and decays into the resist over a few nm.
- Charging: tails trailing each resist edge along the scan direction, and a slow
  brightness drift over the field.
- Noise: Gaussian approximation of shot noise for 2 to 32 averaged frames, per-line
  offsets, and 8- or 16-bit digitisation with random gain.

The ground truth of each feature is its drawn outline (resist boundary): pixels whose
area is at least half inside.

:func:`render_independent` makes one image; :func:`write_independent_dataset` writes a
dataset in the project's format, one exposure case per named appearance condition
(:data:`CONDITIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = ["Appearance", "CONDITIONS", "IndependentSample", "render_independent", "write_independent_dataset",
           "PATTERNS"]

#: Pattern kinds of the second renderer.
PATTERNS = ("grating", "iso_lines", "line_ends", "lt_shapes", "random_polygons", "contacts")

_SS = 4  # supersampling factor


@dataclass(frozen=True)
class Appearance:
    """How one image looks; ranges are drawn from per image.

    Attributes
    ----------
    contrast : (float, float)
        Resist signal minus substrate signal (substrate about 0.35), range.
    band : (float, float)
        Amplitude of the edge-brightening band inside the resist; (0, 0) for none.
    band_nm : (float, float)
        Decay length of the band into the resist, nm.
    frames : tuple of int
        Frames averaged (drawn from).
    pixel_nm : (float, float)
        Pixel size range, nm (drawn log-uniformly).
    charging : (float, float)
        Amplitude of the charging tails after resist edges (signed, along +x).
    drift : (float, float)
        Amplitude of the slow brightness drift over the field.
    bit_depth : tuple of int
    """

    contrast: tuple[float, float] = (0.06, 0.2)
    band: tuple[float, float] = (0.12, 0.3)
    band_nm: tuple[float, float] = (1.5, 4.0)
    frames: tuple[int, ...] = (8, 16, 32)
    pixel_nm: tuple[float, float] = (0.8, 2.0)
    charging: tuple[float, float] = (0.0, 0.02)
    drift: tuple[float, float] = (0.0, 0.03)
    bit_depth: tuple[int, ...] = (8,)


#: Named appearance conditions: each becomes one exposure case of a written dataset.
CONDITIONS: dict[str, Appearance] = {
    "bright_resist": Appearance(),
    "dark_resist": Appearance(contrast=(-0.05, -0.02)),
    "equal_contrast": Appearance(contrast=(-0.01, 0.01), band=(0.15, 0.3)),
    "no_edge_band": Appearance(contrast=(0.06, 0.2), band=(0.0, 0.0)),
    "low_snr": Appearance(frames=(2,)),
    "low_contrast": Appearance(contrast=(0.04, 0.07), band=(0.0, 0.0), frames=(8, 16)),
    "charging": Appearance(charging=(0.04, 0.1), drift=(0.08, 0.15)),
    "coarse_pixels": Appearance(pixel_nm=(6.0, 20.0)),
    "fine_pixels": Appearance(pixel_nm=(0.5, 0.8)),
    "mixed_16bit": Appearance(contrast=(-0.05, 0.2), frames=(2, 4, 8, 16, 32), pixel_nm=(0.5, 20.0),
                              charging=(0.0, 0.06), drift=(0.0, 0.1), bit_depth=(16,)),
}


@dataclass
class IndependentSample:
    """One rendered image and its truth.

    Attributes
    ----------
    image : (M, N) uint8 or uint16 ndarray
    instances : (M, N) int32 ndarray
        Feature labels from 1 (resist features in line tone, openings in hole tone).
    tone : {"line", "hole"}
        Whether the features are resist (``line``) or openings (``hole``).
    pattern : str
    pixel_size_nm : float
    feature_px : float
        The pattern's characteristic feature size (CD) in px.
    params : dict
        The appearance values drawn.
    design : dict of int to (K, 2) ndarray
        Each feature's outline before roughening, by label: its design polygon, x and y in
        px with pixel centres at integers (the ``layout/<stem>.json`` convention).
    """

    image: np.ndarray
    instances: np.ndarray
    tone: str
    pattern: str
    pixel_size_nm: float
    feature_px: float
    params: dict = field(default_factory=dict)
    design: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- geometry (px)

def _rough(outline: np.ndarray, amp: float, corr: float, rng: np.random.Generator) -> np.ndarray:
    """Densify a closed outline to ~1 px steps and move each point along its normal by correlated noise."""
    pts = np.vstack([outline, outline[:1]])
    seg = np.diff(pts, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    dense = []
    for p, d, n in zip(pts[:-1], seg, lens):
        k = max(1, int(np.ceil(n)))
        dense.append(p + np.outer(np.arange(k) / k, d))
    dense = np.vstack(dense)
    if amp <= 0 or len(dense) < 8:
        return dense
    sigma = max(corr, 0.5)
    noise = ndi.gaussian_filter1d(rng.standard_normal(len(dense)), sigma, mode="wrap")
    # scaled by the filter's own gain (its impulse response on this outline), not by the draw's spread: on an
    # outline shorter than the correlation length the draw is nearly one offset, and dividing by its small
    # spread made that offset many times amp (contacts of 9 px grown or shrunk by several px)
    delta = np.zeros(len(dense))
    delta[0] = 1.0
    noise *= amp / np.sqrt(np.sum(ndi.gaussian_filter1d(delta, sigma, mode="wrap") ** 2))
    tangent = np.roll(dense, -1, axis=0) - np.roll(dense, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.hypot(normal[:, 0], normal[:, 1])[:, None] + 1e-12
    return dense + noise[:, None] * normal


def _rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _pattern(kind: str, size: int, cd: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Outlines (x, y in px, corner convention: pixel c spans [c, c+1]) of one pattern's features."""
    s = float(size)
    if kind == "grating":
        pitch = cd * rng.uniform(1.8, 3.0)
        off = rng.uniform(0, pitch)
        out = []
        x = off - pitch
        while x < s:
            if x + cd > 0:
                out.append(_rect(x, -4 * cd, x + cd, s + 4 * cd))
            x += pitch
        if rng.random() < 0.5:
            out = [o[:, ::-1].copy() for o in out]
        return out
    if kind == "iso_lines":
        n = int(rng.integers(1, 3))
        out = []
        for i in range(n):
            length = rng.uniform(0.5, 0.8) * s
            xc = s * (i + 1) / (n + 1)
            y0 = (s - length) / 2
            out.append(_rect(xc - cd / 2, y0, xc + cd / 2, y0 + length))
        return out
    if kind == "line_ends":
        gap = cd * rng.uniform(0.8, 2.0)
        pitch = cd * rng.uniform(2.2, 3.2)
        n = max(1, min(4, int(0.8 * s // pitch)))
        x0 = (s - (n - 1) * pitch - cd) / 2
        out = []
        for i in range(n):
            xl = x0 + i * pitch
            out.append(_rect(xl, -2 * cd, xl + cd, s / 2 - gap / 2))
            out.append(_rect(xl, s / 2 + gap / 2, xl + cd, s + 2 * cd))
        return out
    if kind == "lt_shapes":
        out = []
        cell = s / 2
        for i in range(2):
            for j in range(2):
                a, b = rng.uniform(0.5, 0.8, 2) * cell
                w = min(cd, 0.4 * min(a, b))
                ox, oy = i * cell + (cell - a) / 2, j * cell + (cell - b) / 2
                if rng.random() < 0.5:
                    pts = [[ox, oy], [ox + w, oy], [ox + w, oy + b - w], [ox + a, oy + b - w], [ox + a, oy + b],
                           [ox, oy + b]]
                else:
                    xm = ox + (a - w) / 2
                    pts = [[ox, oy], [ox + a, oy], [ox + a, oy + w], [xm + w, oy + w], [xm + w, oy + b],
                           [xm, oy + b], [xm, oy + w], [ox, oy + w]]
                out.append(np.array(pts, float))
        return out
    if kind == "random_polygons":
        out = []
        n = int(rng.integers(2, 5))
        cell = s / 2
        cells = rng.permutation(4)[:n]
        for k in cells:
            cx, cy = (k % 2 + 0.5) * cell, (k // 2 + 0.5) * cell
            r = min(rng.uniform(0.6, 1.0) * cd, 0.4 * cell)
            m = int(rng.integers(5, 10))
            ang = np.sort(rng.uniform(0, 2 * np.pi, m))
            rad = r * rng.uniform(0.6, 1.0, m)
            out.append(np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1))
        return out
    if kind == "contacts":
        stagger = rng.random() < 0.5
        ell = rng.uniform(1.0, 1.3)
        pitch = cd * ell * rng.uniform(1.8, 2.6)
        out = []
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        row = 0
        y = rng.uniform(0, pitch) - pitch
        x0 = rng.uniform(0, pitch) - pitch  # the first row is always drawn: y starts above the image
        while y < s + pitch:
            xs = x0 + (pitch / 2 if stagger and row % 2 else 0)
            while xs < s + pitch:
                out.append(np.stack([xs + ell * cd / 2 * np.cos(t), y + cd / 2 * np.sin(t)], axis=1))
                xs += pitch
            y += pitch * (0.87 if stagger else 1.0)
            row += 1
        return out
    raise ValueError(f"Invalid pattern {kind!r}: expected one of {PATTERNS}")


def _draw(outlines: list[np.ndarray], size: int) -> np.ndarray:
    """Label image at _SS x resolution (0 outside)."""
    big = np.zeros((size * _SS, size * _SS), np.int32)
    for i, o in enumerate(outlines):
        # cv2 puts sub-pixel j's centre at j; in the outline's frame (pixel c spanning [c, c+1]) it is at
        # (j + 0.5) / _SS, so the outline moves by half a sub-pixel before drawing
        pts = np.round((o * _SS - 0.5) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(big, [pts.reshape(-1, 1, 2)], int(i + 1), lineType=cv2.LINE_8, shift=4)
    return big


def _down(big: np.ndarray) -> np.ndarray:
    n = big.shape[0] // _SS
    return big.reshape(n, _SS, n, _SS).mean(axis=(1, 3))


# --------------------------------------------------------------------------- rendering

def render_independent(
    seed: int | np.random.SeedSequence,
    *,
    appearance: Appearance = Appearance(),
    size: int = 384,
    pattern: str | None = None,
    tone: str | None = None,
    feature_px: float | None = None,
    outlines: list | None = None,
    pixel_size_nm: float | None = None,
    roughness: bool = True,
) -> IndependentSample:
    """Render one SEM image with the second appearance model.

    Parameters
    ----------
    seed : int or SeedSequence
    appearance : Appearance
    size : int
        Image side, px.
    pattern : str, optional
        One of :data:`PATTERNS` (drawn when omitted).
    tone : {"line", "hole"}, optional
        Drawn when omitted.
    feature_px : float, optional
        Feature size (CD) in px; drawn log-uniformly from 8 px to a fraction of the
        image when omitted.
    outlines : list of (K, 2) ndarray, optional
        Draw these outlines (x, y in px, pixel c spanning [c, c+1]) instead of a pattern:
        a given design rendered with this appearance model. Feature k is ``outlines[k - 1]``
        in the instances, whether or not it is visible.
    pixel_size_nm : float, optional
        Drawn from the appearance's range when omitted.
    roughness : bool
        Rough edges (line-edge roughness); without it the outlines are drawn as given.

    Returns
    -------
    IndependentSample
    """
    rng = np.random.default_rng(seed)
    pattern = pattern or PATTERNS[int(rng.integers(len(PATTERNS)))]
    tone = tone or ("line", "hole")[int(rng.integers(2))]
    lo, hi = np.log(appearance.pixel_nm[0]), np.log(appearance.pixel_nm[1])
    ps = float(np.exp(rng.uniform(lo, hi)))
    if pixel_size_nm:
        ps = float(pixel_size_nm)
    max_cd = {"grating": 0.2, "contacts": 0.22, "line_ends": 0.15, "iso_lines": 0.3,
              "lt_shapes": 0.12, "random_polygons": 0.45}[pattern] * size
    cd = float(feature_px) if feature_px else float(np.exp(rng.uniform(np.log(8.0), np.log(max(9.0, max_cd)))))
    given = outlines is not None
    outlines = [np.asarray(o, float) for o in outlines] if given else _pattern(pattern, size, cd, rng)
    drawn = list(outlines)
    ler_px = min(rng.uniform(0.3, 1.5) / ps + 0.15, 0.05 * cd)
    if roughness:
        outlines = [_rough(o, ler_px, corr=max(1.0, 8.0 / ps), rng=rng) for o in outlines]
    big = _draw(outlines, size)
    feat_big = big > 0
    resist_big = feat_big if tone == "line" else ~feat_big
    # truth: a pixel belongs to feature k when at least half its area is inside k
    instances = np.zeros((size, size), np.int32)
    for k in range(1, len(outlines) + 1):
        cover = _down((big == k).astype(np.float32))
        instances[cover >= 0.5] = k
    present = np.unique(instances)
    present = present[present > 0]
    relabel = np.zeros(len(outlines) + 1, np.int32)
    relabel[present] = present if given else np.arange(1, len(present) + 1)
    instances = relabel[instances]
    design = {int(relabel[k]): drawn[k - 1] - 0.5 for k in present}

    substrate = rng.uniform(0.3, 0.42)
    contrast = rng.uniform(*appearance.contrast)
    band = rng.uniform(*appearance.band)
    band_px = rng.uniform(*appearance.band_nm) / ps * _SS
    sig = np.where(resist_big, substrate + contrast, substrate).astype(np.float32)
    if band > 0:
        depth = cv2.distanceTransform(resist_big.astype(np.uint8), cv2.DIST_L2, 5)
        sig += (band * np.exp(-depth / max(band_px, 0.5)) * resist_big).astype(np.float32)
    sig = _down(sig)
    beam_px = rng.uniform(0.8, 2.5) / ps
    if beam_px > 0.3:
        sig = cv2.GaussianBlur(sig, (0, 0), beam_px)
    charging = rng.uniform(*appearance.charging) * rng.choice([-1.0, 1.0])
    tail_px = rng.uniform(4, 25)  # drawn with or without charging: the rest of the image is drawn alike either way
    if charging:
        # the tail is part of what the beam sees: as sharp as the beam, not as the outline
        resist = _down(resist_big.astype(np.float32))
        if beam_px > 0.3:
            resist = cv2.GaussianBlur(resist, (0, 0), beam_px)
        a = np.exp(-1.0 / tail_px)
        lagged = resist.copy()
        for c in range(1, size):  # causal exponential memory along the scan direction (+x)
            lagged[:, c] = a * lagged[:, c - 1] + (1 - a) * resist[:, c]
        sig += charging * (lagged - resist) * 4.0
    drift = rng.uniform(*appearance.drift)
    if drift:
        yy, xx = np.mgrid[0:size, 0:size] / size
        th = rng.uniform(0, 2 * np.pi)
        sig += drift * (np.cos(th) * (xx - 0.5) + np.sin(th) * (yy - 0.5) + 0.8 * (yy - 0.5) ** 2)
    frames = int(rng.choice(appearance.frames))
    electrons = rng.uniform(5.0, 9.0) * frames
    noisy = sig + rng.standard_normal(sig.shape) * np.sqrt(np.clip(sig, 1e-3, None) / electrons)
    noisy += rng.normal(0, 0.004, size=(size, 1))
    bits = int(rng.choice(appearance.bit_depth))
    top = 255 if bits == 8 else 65535
    gain = rng.uniform(0.9, 1.6)
    offset = rng.uniform(-0.15, 0.05)
    img = np.clip((noisy * gain + offset), 0, 1) * top
    image = np.round(img).astype(np.uint8 if bits == 8 else np.uint16)
    params = dict(pixel_size_nm=ps, contrast=contrast, band=band, band_nm=band_px / _SS * ps, beam_nm=beam_px * ps,
                  charging=charging, tail_px=tail_px if charging else 0.0, drift=drift, frames=frames, bit_depth=bits, ler_px=ler_px)
    return IndependentSample(image=image, instances=instances, tone=tone, pattern=pattern, pixel_size_nm=ps,
                             feature_px=cd, params=params, design=design)


def write_independent_dataset(
    out: str | Path,
    *,
    n_per_condition: int,
    seed: int,
    size: int = 384,
    conditions: tuple[str, ...] | None = None,
    test_per_condition: int | None = None,
    with_design: bool = False,
    appearances: dict[str, Appearance] | None = None,
) -> Path:
    """Write a dataset of the second renderer: one exposure case per appearance condition.

    Parameters
    ----------
    out : path
        Dataset folder (``images/``, ``masks/``, ``meta.csv``).
    n_per_condition : int
    seed : int
        Image ``i`` of condition ``c`` is seeded by ``(seed, c, i)``.
    size : int
        Image side, px.
    conditions : tuple of str, optional
        Names from :data:`CONDITIONS` (default all, in order).
    test_per_condition : int, optional
        Images per condition in the ``test`` split (default all of them).
    with_design : bool
        Also write each image's design polygons (``layout/<stem>.json``, the outlines before
        roughening), so that targets carry a box prompt and the gate's geometry check a
        design to compare with.
    appearances : dict of str to Appearance, optional
        The conditions' appearances, by name, instead of :data:`CONDITIONS` (the names and
        their order, hence the seeds, stay those of :data:`CONDITIONS`): the same patterns
        and noise drawn with one property changed, e.g. no charging.

    Returns
    -------
    Path
    """
    import pandas as pd

    from ..dataset import write_image, write_layout, write_mask

    names = tuple(conditions) if conditions else tuple(CONDITIONS)
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise ValueError(f"Invalid conditions {unknown}: expected names from {list(CONDITIONS)}")
    n_test = n_per_condition if test_per_condition is None else test_per_condition
    out = Path(out)
    rows = []
    for ci, name in enumerate(names):
        code = list(CONDITIONS).index(name) + 1
        for i in range(n_per_condition):
            look = (appearances or CONDITIONS)[name]
            s = render_independent(np.random.SeedSequence([seed, code, i]), appearance=look, size=size)
            stem = f"ind{code:02d}_{i:03d}"
            write_image(out / "images" / f"{stem}.png", s.image)
            write_mask(out / "masks" / f"{stem}.png", s.instances)
            if with_design:
                write_layout(out / "layout" / f"{stem}.json",
                             {k: [np.round(o, 3).tolist()] for k, o in s.design.items()})
            rows.append({"stem": stem, "exposure_case": name, "pixel_size_nm": round(s.pixel_size_nm, 4),
                         "split": "test" if i >= n_per_condition - n_test else "train", "layout_kind": s.pattern,
                         "clip_tone": s.tone,
                         "feature_px": round(s.feature_px, 2),
                         **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.params.items()
                            if k != "pixel_size_nm"}})
    pd.DataFrame(rows).to_csv(out / "meta.csv", index=False)
    return out
