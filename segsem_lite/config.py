"""Settings of every stage, as frozen dataclasses nested by stage.

Sizes are given in nanometres and converted to pixels with the image's pixel size,
so one configuration serves images of any magnification.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import SegSEMError

__all__ = [
    "FallbackConfig",
    "GateConfig",
    "RefineConfig",
    "EdgeConfig",
    "PipelineConfig",
    "nm_to_px",
]


def nm_to_px(length_nm: float, pixel_size_nm: float) -> float:
    """Convert a length in nm to pixels.

    Parameters
    ----------
    length_nm : float
        Length in nm.
    pixel_size_nm : float
        Size of one pixel in nm; must be positive.

    Returns
    -------
    float
        The length in pixels.
    """
    if not pixel_size_nm > 0:
        raise SegSEMError(f"pixel_size_nm={pixel_size_nm!r}: expected a positive number of nm per pixel")
    return float(length_nm) / float(pixel_size_nm)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise SegSEMError(message)


@dataclass(frozen=True)
class FallbackConfig:
    """Sauvola adaptive thresholding, the fallback (and standard) path.

    Attributes
    ----------
    window_nm : float
        Side of the square Sauvola window in nm (made odd in pixels).
    k : float
        Sauvola's sensitivity ``k`` (Sauvola & Pietikainen 2000 use 0.5 on
        documents; SEM features need less).
    r : float or None
        Dynamic range of the standard deviation; ``None`` uses half the image's
        range, as scikit-image does.
    denoise_sigma_nm : float
        Gaussian smoothing before thresholding, in nm; 0 disables it.
    polarity : {"dark", "bright", "auto"}
        Which side of the threshold is foreground. In a SEM image the edge effect makes
        every feature's edge brighter than both its inside and its outside, so the
        feature at the prompt is the dark region enclosed by its bright edge ring, for
        resist lines and contact holes alike: ``dark`` (the default). ``bright`` suits
        images without an edge effect where features outshine the background; ``auto``
        compares the prompt's neighbourhood with the local mean.
    search_radius_nm : float
        How far from the prompt the nearest foreground component is looked for
        when the prompt itself falls on background.
    max_area_fraction : float
        A component larger than this fraction of the image is the background, not a
        feature: the prompt missed.
    """

    window_nm: float = 21.0
    k: float = 0.2
    r: float | None = None
    denoise_sigma_nm: float = 1.5
    polarity: str = "dark"
    search_radius_nm: float = 10.0
    max_area_fraction: float = 0.4

    def __post_init__(self) -> None:
        _require(self.window_nm > 0, f"window_nm={self.window_nm!r}: expected a positive window in nm")
        _require(-1.0 < self.k < 1.0, f"k={self.k!r}: expected Sauvola's k in (-1, 1)")
        _require(self.r is None or self.r > 0, f"r={self.r!r}: expected None or a positive range")
        _require(self.denoise_sigma_nm >= 0, f"denoise_sigma_nm={self.denoise_sigma_nm!r}: expected >= 0")
        _require(self.polarity in ("auto", "bright", "dark"),
                 f"polarity={self.polarity!r}: expected 'auto', 'bright' or 'dark'")
        _require(self.search_radius_nm >= 0, f"search_radius_nm={self.search_radius_nm!r}: expected >= 0")
        _require(0 < self.max_area_fraction <= 1,
                 f"max_area_fraction={self.max_area_fraction!r}: expected a fraction in (0, 1]")


@dataclass(frozen=True)
class GateConfig:
    """The paper's three-stage quality check on SAM2 mask candidates (SegSEM III-C1).

    Attributes
    ----------
    tau_conf : float
        Minimum predicted IoU of a candidate (the paper's 0.90).
    max_regions : int
        Largest number of connected regions a candidate may have (the paper: one).
    min_region_px : int
        Regions smaller than this many pixels are specks, not counted (0 counts every
        pixel). The default matches refinement's speck size (25 nm^2 at 1 nm/px): a speck
        the refinement deletes does not make a candidate fragmented. Masks upsampled from
        SAM2's low-resolution logits often carry a few such specks.
    area_tolerance : float
        Largest relative difference ``|A - A_design| / A_design`` allowed.
    aspect_tolerance : float
        Largest relative difference of aspect ratios allowed.
    """

    tau_conf: float = 0.90
    max_regions: int = 1
    min_region_px: int = 25
    area_tolerance: float = 0.5
    aspect_tolerance: float = 0.5

    def __post_init__(self) -> None:
        _require(0.0 <= self.tau_conf <= 1.0, f"tau_conf={self.tau_conf!r}: expected a predicted IoU in [0, 1]")
        _require(self.max_regions >= 1, f"max_regions={self.max_regions!r}: expected >= 1")
        _require(self.min_region_px >= 0, f"min_region_px={self.min_region_px!r}: expected >= 0")
        _require(self.area_tolerance > 0, f"area_tolerance={self.area_tolerance!r}: expected > 0")
        _require(self.aspect_tolerance > 0, f"aspect_tolerance={self.aspect_tolerance!r}: expected > 0")


@dataclass(frozen=True)
class RefineConfig:
    """Morphological refinement of the accepted mask (SegSEM III-D).

    Attributes
    ----------
    closing_nm : float
        Radius of the disk used for closing, in nm; 0 disables closing.
    fill_holes : bool
        Fill holes enclosed by the mask.
    min_speck_nm2 : float
        Components smaller than this area (nm^2) are removed.
    keep_prompted : bool
        Keep only the component at (or nearest to) the prompt.
    """

    closing_nm: float = 2.0
    fill_holes: bool = True
    min_speck_nm2: float = 25.0
    keep_prompted: bool = True

    def __post_init__(self) -> None:
        _require(self.closing_nm >= 0, f"closing_nm={self.closing_nm!r}: expected >= 0")
        _require(self.min_speck_nm2 >= 0, f"min_speck_nm2={self.min_speck_nm2!r}: expected >= 0")


@dataclass(frozen=True)
class EdgeConfig:
    """Sub-pixel edge placement on the final mask (:mod:`segsem_lite.edges`).

    Attributes
    ----------
    enabled : bool
        Place the edges of SegSEM results (accepted candidates and fallback masks).
    standard : bool
        Place them in the standard pipeline too (off: the standard pipeline stays the
        paper's baseline, Sauvola and morphology).
    search_nm : float
        How far along the normal, each way, the edge ridge is looked for.
    denoise_sigma_nm : float
        Gaussian denoising of the image before the profiles are read.
    smooth_nm : float
        Length along the contour over which offsets are median- and Gaussian-smoothed.
    step_correction : bool
        Correct the ridge peak for the material-contrast step under it (a ridge-over-step
        fit of the contour's mean profile; see :mod:`segsem_lite.edges`).
    offset_nm : float
        Constant outward shift after placement: an edge definition other than the ridge
        peak (for example a calibrated bias against AFM or cross-section CDs).
    polarity : {"bright_edge", "dark_edge"}
        Whether edges appear as bright ridges (secondary-electron edge effect) or dark ones.
    min_found : float
        Share of contour points that must find a ridge inside the search range, else the
        mask is left as it was.
    """

    enabled: bool = True
    standard: bool = False
    search_nm: float = 8.0
    denoise_sigma_nm: float = 1.0
    smooth_nm: float = 7.0
    step_correction: bool = True
    offset_nm: float = 0.0
    polarity: str = "bright_edge"
    min_found: float = 0.5

    def __post_init__(self) -> None:
        _require(self.search_nm > 0, f"search_nm={self.search_nm!r}: expected a positive distance in nm")
        _require(self.denoise_sigma_nm >= 0, f"denoise_sigma_nm={self.denoise_sigma_nm!r}: expected >= 0")
        _require(self.smooth_nm >= 0, f"smooth_nm={self.smooth_nm!r}: expected >= 0")
        _require(self.polarity in ("bright_edge", "dark_edge"),
                 f"polarity={self.polarity!r}: expected 'bright_edge' or 'dark_edge'")
        _require(0.0 <= self.min_found <= 1.0, f"min_found={self.min_found!r}: expected a share in [0, 1]")


@dataclass(frozen=True)
class PipelineConfig:
    """All settings of the SegSEM pipeline.

    Attributes
    ----------
    fallback, gate, refine, edge
        Settings of each stage.
    pixel_size_nm : float
        Pixel size used when a dataset does not give one.
    """

    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    pixel_size_nm: float = 1.0

    def __post_init__(self) -> None:
        _require(self.pixel_size_nm > 0, f"pixel_size_nm={self.pixel_size_nm!r}: expected a positive nm per pixel")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        """Build a configuration from nested or flat ``stage.field`` keys.

        Parameters
        ----------
        values : mapping
            For example ``{"gate": {"tau_conf": 0.8}}`` or ``{"gate.tau_conf": 0.8}``.

        Raises
        ------
        SegSEMError
            For an unknown stage or field.
        """
        nested: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        stages = {f.name: f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)}
        for key, value in values.items():
            if "." in key:
                stage, name = key.split(".", 1)
                nested.setdefault(stage, {})[name] = value
            elif key in stages and isinstance(value, Mapping):
                nested.setdefault(key, {}).update(value)
            else:
                top[key] = value
        kwargs: dict[str, Any] = {}
        for stage, fields_ in nested.items():
            if stage not in stages:
                raise SegSEMError(f"{stage!r}: unknown configuration stage; expected one of {sorted(stages)}")
            stage_cls = stages[stage].default_factory
            known = {f.name for f in dataclasses.fields(stage_cls)}
            for name in fields_:
                if name not in known:
                    raise SegSEMError(f"{stage}.{name}: unknown setting; expected one of {sorted(known)}")
            kwargs[stage] = stage_cls(**fields_)
        known_top = {f.name for f in dataclasses.fields(cls)} - set(stages)
        for name in top:
            if name not in known_top:
                raise SegSEMError(f"{name!r}: unknown setting; expected one of {sorted(known_top | set(stages))}")
        return cls(**kwargs, **top)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as nested plain dictionaries."""
        return dataclasses.asdict(self)
