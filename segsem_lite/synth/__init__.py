"""A physics-based synthetic CD-SEM generator, stage by stage.

``layout`` draws a design clip, ``lithography`` prints it (blur, dose, focus, resist
threshold, roughness), ``imaging`` images the printed resist in a SEM (edge effect,
material contrast, beam blur, shot noise, scan lines, charging). :func:`make_sample`
chains them; :func:`write_dataset` writes the dataset format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import imaging, lithography
from .cases import EXPOSURE_CASES, ExposureCase, exposure_case
from .layout import LAYOUT_KINDS, LayoutClip, feature_outline, make_layout, rasterize_features

__all__ = [
    "EXPOSURE_CASES",
    "ExposureCase",
    "exposure_case",
    "LAYOUT_KINDS",
    "LayoutClip",
    "SyntheticSample",
    "make_sample",
    "write_dataset",
]

#: In-focus optical blur (sigma) in nm.
OPTICAL_BLUR_NM = 9.0
#: Width of the resist sidewall in nm.
SIDEWALL_NM = 3.0


@dataclass
class SyntheticSample:
    """One generated image with everything that made it.

    Attributes
    ----------
    image : (M, N) uint8 or uint16 ndarray
        The SEM image.
    instances : (M, N) int32 ndarray
        Printed features (ground truth), labelled as their design features.
    clip : LayoutClip
    case : ExposureCase
    pixel_size_nm : float
    stages : dict of str to ndarray
        Intermediate images (``coverage``, ``aerial``, ``printed``, ``height``, ``signal``,
        ``blurred``, ``noisy``), for showing how the image came about.
    """

    image: np.ndarray
    instances: np.ndarray
    clip: LayoutClip
    case: ExposureCase
    pixel_size_nm: float
    stages: dict = field(default_factory=dict)

    def design_polygons(self) -> dict[str, list[list[list[float]]]]:
        """Design polygons in pixel coordinates (x, y), in the layout JSON form."""
        return {
            str(f.label): [np.round(p, 3).tolist() for p in feature_outline(f, self.pixel_size_nm)]
            for f in self.clip.features
        }


def make_sample(
    case: int,
    seed: int | np.random.SeedSequence,
    *,
    size: int = 512,
    kind: str | None = None,
    bit_depth: int = 8,
    pixel_size_nm: float | None = None,
    roughness: bool = True,
) -> SyntheticSample:
    """Generate one CD-SEM image and its ground truth.

    Parameters
    ----------
    case : int
        Exposure case, 1 (easy) to 10 (hard).
    seed : int or SeedSequence
        Everything random derives from it: same seed, same image.
    size : int
        Image side in pixels.
    kind : str, optional
        Layout kind (see :data:`LAYOUT_KINDS`); drawn from the seed when omitted.
    bit_depth : {8, 16}
    pixel_size_nm : float, optional
        Drawn around 1 nm/px when omitted.
    roughness : bool
        Line-edge roughness as the exposure case sets it; without it the features print as
        the blurred design at the dose (for checks that need the printed pattern exactly
        where the design puts it).

    Returns
    -------
    SyntheticSample
    """
    cond = exposure_case(case)
    rng = np.random.default_rng(seed)
    if kind is None:
        kind = LAYOUT_KINDS[int(rng.integers(len(LAYOUT_KINDS)))]
    ps = float(pixel_size_nm) if pixel_size_nm else float(np.round(rng.uniform(0.9, 1.1), 3))
    shape = (size, size)
    clip = make_layout(kind, rng, size * ps)
    coverage, design_labels = rasterize_features(clip, shape, ps)
    dose = cond.dose * rng.uniform(0.985, 1.015)
    aerial = lithography.aerial_image(coverage, blur_nm=OPTICAL_BLUR_NM, defocus_nm=cond.defocus_nm, pixel_size_nm=ps)
    printed = lithography.print_pattern(
        aerial, tone=clip.tone, dose=dose, ler_nm=cond.ler_nm if roughness else 0.0,
        blur_nm=lithography.effective_blur_nm(OPTICAL_BLUR_NM, cond.defocus_nm), pixel_size_nm=ps, rng=rng
    )
    instances = lithography.assign_instances(printed, design_labels)
    resist = instances > 0 if clip.tone == "line" else ~(instances > 0)
    height = imaging.topography(resist, sidewall_nm=SIDEWALL_NM, pixel_size_nm=ps)
    substrate = rng.uniform(0.18, 0.26)
    signal = imaging.secondary_electron_signal(
        height, substrate=substrate, material_contrast=cond.material_contrast, edge_gain=cond.edge_gain,
        sidewall_nm=SIDEWALL_NM, pixel_size_nm=ps,
    )
    blurred = imaging.beam_blur(signal, beam_nm=cond.beam_nm, pixel_size_nm=ps)
    noisy = imaging.shot_noise(blurred, electrons_per_frame=cond.electrons_per_frame, frames=cond.frames, rng=rng)
    scanned = imaging.scan_line_noise(noisy, offset_sigma=cond.scan_offset, jitter_px=cond.jitter_px, rng=rng)
    charged = imaging.charging_drift(scanned, strength=cond.charging, rng=rng)
    image = imaging.digitize(charged, bit_depth=bit_depth)
    stages = {
        "coverage": coverage, "aerial": aerial, "printed": printed, "height": height,
        "signal": signal, "blurred": blurred, "noisy": noisy, "charged": charged,
    }
    return SyntheticSample(image=image, instances=instances, clip=clip, case=cond, pixel_size_nm=ps, stages=stages)


def write_dataset(
    out: str | Path,
    *,
    n_per_case: int,
    seed: int,
    size: int = 512,
    test_per_case: int = 1,
    cases: tuple[int, ...] | None = None,
    bit_depth: int = 8,
    progress: bool = False,
) -> Path:
    """Write a synthetic dataset in the documented format.

    Parameters
    ----------
    out : path
        Dataset folder; ``images/``, ``masks/``, ``layout/`` and ``meta.csv`` are written.
    n_per_case : int
        Images per exposure case.
    seed : int
        Image ``i`` of case ``c`` is seeded by ``(seed, c, i)``: independent of ``n_per_case``.
    size : int
    test_per_case : int
        The last ``test_per_case`` images of each case go to the ``test`` split, the rest to ``train``.
    cases : tuple of int, optional
        Exposure cases to write (default all ten).
    bit_depth : {8, 16}
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The dataset folder.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..dataset import write_image, write_layout, write_mask

    if n_per_case < 1:
        raise ValueError(f"Invalid n_per_case {n_per_case!r}: expected at least 1")
    if not 0 <= test_per_case <= n_per_case:
        raise ValueError(f"Invalid test_per_case {test_per_case!r}: expected 0 to n_per_case={n_per_case}")
    out = Path(out)
    for sub in ("images", "masks", "layout"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    cases = tuple(cases) if cases else tuple(c.case for c in EXPOSURE_CASES)
    rows = []
    jobs = [(c, i) for c in cases for i in range(n_per_case)]
    for c, i in tqdm(jobs, disable=not progress, desc="synth", unit="img"):
        s = make_sample(c, np.random.SeedSequence([seed, c, i]), size=size, bit_depth=bit_depth)
        stem = f"case{c:02d}_{i:03d}"
        write_image(out / "images" / f"{stem}.png", s.image)
        write_mask(out / "masks" / f"{stem}.png", s.instances)
        write_layout(out / "layout" / f"{stem}.json", s.design_polygons())
        rows.append({
            "stem": stem,
            "exposure_case": c,
            "pixel_size_nm": s.pixel_size_nm,
            "split": "test" if i >= n_per_case - test_per_case else "train",
            "layout_kind": s.clip.kind,
            "clip_tone": s.clip.tone,
            "dose": round(s.case.dose, 3),
            "defocus_nm": s.case.defocus_nm,
            "frames": s.case.frames,
        })
    pd.DataFrame(rows).to_csv(out / "meta.csv", index=False)
    return out
