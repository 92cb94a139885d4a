"""The training generator widened: every appearance the classical path meets, drawn per image.

The physics chain of :func:`segsem_lite.synth.make_sample` (layout, lithography, SEM
imaging), with the imaging drawn from wide ranges per image instead of the ten exposure
cases, and three effects the cases do not have:

- **Both tones of every layout kind:** lines as resist or as trenches, contacts as holes
  or as pillars.
- **Material contrast from inverted to strong, edge effect from none to strong,** 2 to 32
  frames, beam blur from 0.5 to 3 nm, pixel sizes from 0.5 to 3 nm, charging drift, scan
  offsets and jitter, 8- or 16-bit.
- **Detector lag along the scan:** the signal mixed with its causal exponential average
  along each row (+x), with a signed weight: a bright streak or a dark undershoot after
  every edge, a few to a few tens of pixels long. **JPEG** compression artefacts.

This module is for training. Validation uses the second renderer
(:mod:`segsem_lite.synth.independent`), written apart from this chain: its tails follow the
resist map, not the signal, and its edge band is one-sided, so a model trained here and
measured there is measured on an appearance it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi
from scipy.signal import lfilter

from . import imaging, lithography
from .cases import EXPOSURE_CASES, ExposureCase
from .layout import LAYOUT_KINDS, make_layout, rasterize_features

__all__ = ["HARD_RANGES", "WideRanges", "draw_wide_appearance", "feature_cnr", "make_wide_sample",
           "wide_condition", "write_wide_dataset"]


@dataclass(frozen=True)
class WideRanges:
    """Ranges the widened generator draws from, per image (uniform unless said).

    Attributes
    ----------
    material_contrast : (float, float)
        Resist minus substrate yield (the substrate is about 0.22); negative is resist darker.
    no_edge_effect : float
        Share of images without the edge effect; the others draw ``edge_gain``.
    edge_gain : (float, float)
    frames : tuple of int
        Drawn from these.
    beam_nm : (float, float)
    pixel_size_nm : (float, float)
        Log-uniform.
    flip_tone : float
        Share of images whose layout prints in the other tone (trenches, pillars).
    lag : float
        Share of images with detector lag along the scan.
    lag_weight : (float, float)
        Magnitude of the lag's weight; its sign is drawn.
    lag_px : (float, float)
        Decay length of the lag along the row, px.
    jpeg : float
        Share of images saved through JPEG.
    jpeg_quality : (int, int)
    bit16 : float
        Share of 16-bit images.
    """

    material_contrast: tuple[float, float] = (-0.12, 0.32)
    no_edge_effect: float = 0.25
    edge_gain: tuple[float, float] = (0.1, 0.9)
    frames: tuple[int, ...] = (2, 4, 8, 16, 32)
    beam_nm: tuple[float, float] = (0.5, 3.0)
    pixel_size_nm: tuple[float, float] = (0.5, 3.0)
    flip_tone: float = 0.4
    lag: float = 0.4
    lag_weight: tuple[float, float] = (0.1, 0.6)
    lag_px: tuple[float, float] = (3.0, 30.0)
    jpeg: float = 0.25
    jpeg_quality: tuple[int, int] = (40, 90)
    bit16: float = 0.15


HARD_RANGES = WideRanges(material_contrast=(-0.12, 0.08), no_edge_effect=0.5, frames=(2, 4), lag=0.5,
                         jpeg=0.3)
"""The conditions where the classical path struggles: contrast low or inverted, few frames, edges
without the edge effect, detector lag, JPEG."""

#: A widened image's condition is the first of these it meets (the hardest first).
CONDITIONS = ("inverted", "no contrast", "2 frames", "no edge effect", "detector lag", "JPEG", "other")


def wide_condition(material_contrast: float, frames: int, edge_gain: float, lag_weight: float,
                   jpeg_quality: int) -> str:
    """Name a widened image's condition: the first of :data:`CONDITIONS` its appearance meets."""
    if material_contrast <= -0.03:
        return "inverted"
    if abs(material_contrast) < 0.03:
        return "no contrast"
    if frames <= 2:
        return "2 frames"
    if edge_gain == 0:
        return "no edge effect"
    if lag_weight:
        return "detector lag"
    return "JPEG" if jpeg_quality else "other"


def feature_cnr(image: np.ndarray, instances: np.ndarray) -> float:
    """Contrast-to-noise ratio of an image's features, per pixel: how visible its truth is.

    The contrast is the largest difference between the mean grey levels of the features'
    interiors, their edge band (2 px either side of the boundary) and the background (3 px
    from any feature); the noise is the robust standard deviation of neighbour differences
    along rows or along columns, whichever is larger (so scan-line offsets count as noise).
    NaN when the image has no feature or no background.
    """
    im = np.asarray(image, dtype=np.float64)
    feat = np.asarray(instances) > 0
    if not feat.any() or feat.all():
        return float("nan")
    sigma = 0.0
    for axis in (0, 1):
        d = np.diff(im, axis=axis)
        sigma = max(sigma, 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0))
    regions = (ndi.binary_erosion(feat, iterations=3), ~ndi.binary_dilation(feat, iterations=3),
               ndi.binary_dilation(feat, iterations=2) & ~ndi.binary_erosion(feat, iterations=2))
    means = [im[r].mean() for r in regions if r.sum() >= 20]
    if len(means) < 2:
        return float("nan")
    return (max(means) - min(means)) / max(sigma, 1e-9)


def draw_wide_appearance(rng: np.random.Generator, ranges: WideRanges = WideRanges()) -> dict:
    """One image's appearance: lithography from a random exposure case, imaging from ``ranges``."""
    base = EXPOSURE_CASES[int(rng.integers(len(EXPOSURE_CASES)))]
    edge = 0.0 if rng.random() < ranges.no_edge_effect else float(rng.uniform(*ranges.edge_gain))
    case = replace(base, frames=int(rng.choice(ranges.frames)),
                   material_contrast=float(rng.uniform(*ranges.material_contrast)), edge_gain=edge,
                   beam_nm=float(rng.uniform(*ranges.beam_nm)),
                   scan_offset=base.scan_offset * float(rng.uniform(0.0, 2.0)),
                   jitter_px=base.jitter_px * float(rng.uniform(0.0, 2.0)),
                   charging=float(rng.uniform(0.0, 0.45)))
    lo, hi = np.log(ranges.pixel_size_nm)
    lag = rng.random() < ranges.lag
    return {
        "case": case,
        "kind": LAYOUT_KINDS[int(rng.integers(len(LAYOUT_KINDS)))],
        "flip_tone": bool(rng.random() < ranges.flip_tone),
        "pixel_size_nm": float(np.round(np.exp(rng.uniform(lo, hi)), 3)),
        "lag_weight": float(rng.uniform(*ranges.lag_weight) * rng.choice([-1.0, 1.0])) if lag else 0.0,
        "lag_px": float(rng.uniform(*ranges.lag_px)),
        "jpeg_quality": int(rng.integers(*ranges.jpeg_quality)) if rng.random() < ranges.jpeg else 0,
        "bit_depth": 16 if rng.random() < ranges.bit16 else 8,
    }


def detector_lag(image: np.ndarray, *, weight: float, length_px: float) -> np.ndarray:
    """The signal mixed with its causal exponential average along each row (+x, the fast scan)."""
    a = float(np.exp(-1.0 / length_px))
    start = image[:, :1]
    lagged = lfilter([1 - a], [1, -a], image - start, axis=1) + start
    return image + weight * (lagged - image)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An 8-bit image through JPEG at ``quality`` (16-bit images are left alone)."""
    if image.dtype != np.uint8:
        return image
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else image


@dataclass
class WideSample:
    """One widened image: ``image``, ``instances``, the ``clip``, ``pixel_size_nm`` and the drawn ``appearance``."""

    image: np.ndarray
    instances: np.ndarray
    clip: object
    pixel_size_nm: float
    appearance: dict


def make_wide_sample(seed: int | np.random.SeedSequence, *, size: int = 512,
                     ranges: WideRanges = WideRanges()) -> WideSample:
    """Generate one image of the widened generator and its ground truth (see the module)."""
    from . import OPTICAL_BLUR_NM, SIDEWALL_NM

    rng = np.random.default_rng(seed)
    ap = draw_wide_appearance(rng, ranges)
    cond: ExposureCase = ap["case"]
    ps = ap["pixel_size_nm"]
    clip = make_layout(ap["kind"], rng, size * ps)
    if ap["flip_tone"]:
        clip = replace(clip, tone="hole" if clip.tone == "line" else "line")
    coverage, design_labels = rasterize_features(clip, (size, size), ps)
    aerial = lithography.aerial_image(coverage, blur_nm=OPTICAL_BLUR_NM, defocus_nm=cond.defocus_nm, pixel_size_nm=ps)
    printed = lithography.print_pattern(
        aerial, tone=clip.tone, dose=cond.dose * rng.uniform(0.985, 1.015), ler_nm=cond.ler_nm,
        blur_nm=lithography.effective_blur_nm(OPTICAL_BLUR_NM, cond.defocus_nm), pixel_size_nm=ps, rng=rng)
    instances = lithography.assign_instances(printed, design_labels)
    resist = instances > 0 if clip.tone == "line" else ~(instances > 0)
    height = imaging.topography(resist, sidewall_nm=SIDEWALL_NM, pixel_size_nm=ps)
    signal = imaging.secondary_electron_signal(
        height, substrate=rng.uniform(0.18, 0.26), material_contrast=cond.material_contrast,
        edge_gain=cond.edge_gain, sidewall_nm=SIDEWALL_NM, pixel_size_nm=ps)
    signal = np.clip(signal, 0.02, None)  # an inverted contrast must not ask for a negative yield
    blurred = imaging.beam_blur(signal, beam_nm=cond.beam_nm, pixel_size_nm=ps)
    if ap["lag_weight"]:
        blurred = np.clip(detector_lag(blurred, weight=ap["lag_weight"], length_px=ap["lag_px"]), 0.0, None)
    noisy = imaging.shot_noise(blurred, electrons_per_frame=cond.electrons_per_frame, frames=cond.frames, rng=rng)
    scanned = imaging.scan_line_noise(noisy, offset_sigma=cond.scan_offset, jitter_px=cond.jitter_px, rng=rng)
    charged = imaging.charging_drift(scanned, strength=cond.charging, rng=rng)
    image = imaging.digitize(charged, bit_depth=ap["bit_depth"])
    if ap["jpeg_quality"]:
        image = _jpeg(image, ap["jpeg_quality"])
    return WideSample(image=image, instances=instances, clip=clip, pixel_size_nm=ps, appearance=ap)


def write_wide_dataset(out: str | Path, *, n: int, seed: int, size: int = 512, n_test: int = 0,
                       ranges: WideRanges = WideRanges(), by_condition: bool = False,
                       min_cnr: float = 0.0, progress: bool = False) -> Path:
    """Write ``n`` widened images in the dataset format (``images/``, ``masks/``, ``layout/``, ``meta.csv``).

    Image ``i`` is seeded by ``(seed, i)``. The last ``n_test`` images form the ``test`` split.
    meta.csv's ``exposure_case`` is the case the lithography came from, or with
    ``by_condition`` the image's :func:`wide_condition` (then ``litho_case`` keeps the case);
    ``condition``, ``cnr`` (:func:`feature_cnr`) and the other columns record the drawn
    appearance. ``ranges`` may be :data:`HARD_RANGES`. With ``min_cnr`` an image whose features
    are less visible than that is drawn again (seeded by ``(seed, i, attempt)``), so that hard
    conditions do not turn into invisible ones.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..dataset import write_image, write_layout, write_mask
    from .layout import feature_outline

    if n < 1:
        raise ValueError(f"Invalid n {n!r}: expected at least 1")
    if not 0 <= n_test < n:
        raise ValueError(f"Invalid n_test {n_test!r}: expected 0 to n - 1 = {n - 1}")
    out = Path(out)
    for sub in ("images", "masks", "layout"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(n), disable=not progress, desc="synth", unit="img"):
        for attempt in range(201):
            s = make_wide_sample(np.random.SeedSequence([seed, i, attempt] if attempt else [seed, i]), size=size,
                                 ranges=ranges)
            cnr = feature_cnr(s.image, s.instances)
            if min_cnr <= 0 or cnr >= min_cnr:
                break
        else:
            raise ValueError(f"Invalid min_cnr {min_cnr!r}: 201 draws of image {i} stayed below it")
        stem = f"wide_{i:04d}"
        write_image(out / "images" / f"{stem}.png", s.image)
        write_mask(out / "masks" / f"{stem}.png", s.instances)
        polys = {str(f.label): [np.round(p, 3).tolist() for p in feature_outline(f, s.pixel_size_nm)]
                 for f in s.clip.features}
        write_layout(out / "layout" / f"{stem}.json", polys)
        ap, case = s.appearance, s.appearance["case"]
        condition = wide_condition(case.material_contrast, case.frames, case.edge_gain, ap["lag_weight"],
                                   ap["jpeg_quality"])
        rows.append({
            "stem": stem, "exposure_case": condition if by_condition else case.case, "litho_case": case.case,
            "condition": condition, "cnr": round(cnr, 3), "pixel_size_nm": s.pixel_size_nm,
            "split": "test" if i >= n - n_test else "train", "layout_kind": s.clip.kind, "clip_tone": s.clip.tone,
            "material_contrast": round(case.material_contrast, 4), "edge_gain": round(case.edge_gain, 4),
            "frames": case.frames, "beam_nm": round(case.beam_nm, 3), "lag_weight": round(ap["lag_weight"], 4),
            "lag_px": round(ap["lag_px"], 2), "jpeg_quality": ap["jpeg_quality"], "bit_depth": ap["bit_depth"],
        })
    pd.DataFrame(rows).to_csv(out / "meta.csv", index=False)
    return out
