"""The ten exposure cases, from easy (1) to hard (10).

Dose walks away from nominal, alternately under- and over-exposed; focus drifts;
fewer frames are averaged (more shot noise); the resist/substrate contrast fades;
charging, scan noise, roughness and beam blur grow.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExposureCase", "EXPOSURE_CASES", "exposure_case"]


@dataclass(frozen=True)
class ExposureCase:
    """Process and imaging conditions of one exposure case.

    Attributes
    ----------
    case : int
        1 (easy) to 10 (hard).
    dose : float
        Relative exposure dose (1 = nominal).
    defocus_nm : float
        Focus offset; blurs the aerial image.
    ler_nm : float
        One-sigma line-edge roughness.
    frames : int
        Frames averaged by the SEM.
    electrons_per_frame : float
        Mean secondary electrons per pixel per frame at unit yield.
    material_contrast : float
        Resist yield above the substrate's (low values: features barely differ from background).
    edge_gain : float
        Strength of the edge effect.
    beam_nm : float
        Beam (probe) blur sigma.
    scan_offset : float
        Standard deviation of the per-scan-line brightness offset.
    jitter_px : float
        Standard deviation of the per-scan-line shift.
    charging : float
        Strength of the charging drift.
    """

    case: int
    dose: float
    defocus_nm: float
    ler_nm: float
    frames: int
    electrons_per_frame: float
    material_contrast: float
    edge_gain: float
    beam_nm: float
    scan_offset: float
    jitter_px: float
    charging: float


#: case, dose, defocus, LER, frames, e-/frame, contrast, edge, beam, scan offset, jitter, charging
_TABLE = [
    (1, 1.00, 0, 1.0, 32, 10, 0.30, 0.70, 1.2, 0.004, 0.05, 0.05),
    (2, 0.97, 10, 1.2, 24, 10, 0.28, 0.70, 1.3, 0.006, 0.08, 0.08),
    (3, 1.04, 15, 1.4, 16, 10, 0.26, 0.70, 1.4, 0.008, 0.10, 0.12),
    (4, 0.94, 20, 1.6, 12, 10, 0.22, 0.70, 1.5, 0.010, 0.12, 0.15),
    (5, 1.08, 25, 1.8, 8, 10, 0.20, 0.70, 1.6, 0.012, 0.15, 0.18),
    (6, 0.91, 30, 2.0, 8, 8, 0.16, 0.70, 1.7, 0.015, 0.18, 0.22),
    (7, 1.11, 35, 2.2, 6, 8, 0.13, 0.75, 1.8, 0.018, 0.20, 0.26),
    (8, 0.88, 40, 2.5, 4, 8, 0.10, 0.75, 2.0, 0.022, 0.25, 0.30),
    (9, 1.14, 50, 2.8, 4, 6, 0.07, 0.75, 2.2, 0.026, 0.30, 0.35),
    (10, 0.85, 60, 3.0, 2, 6, 0.05, 0.75, 2.4, 0.030, 0.35, 0.40),
]

EXPOSURE_CASES: tuple[ExposureCase, ...] = tuple(ExposureCase(*row) for row in _TABLE)


def exposure_case(case: int) -> ExposureCase:
    """The conditions of exposure case ``case`` (1 to 10)."""
    if not 1 <= int(case) <= len(EXPOSURE_CASES):
        raise ValueError(f"Invalid exposure case {case!r}: expected 1 to {len(EXPOSURE_CASES)}")
    return EXPOSURE_CASES[int(case) - 1]
