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

    Sizes are multiples of the target's scale in pixels: the short side of its design
    when the layout gives one, otherwise the image's feature scale measured from the
    image itself (:func:`segsem_lite.scale.measure_scale`). No length is fixed in nm.

    Attributes
    ----------
    window : float
        Side of the square Sauvola window, in feature scales (at least 15 px).
    k_values : tuple of float
        Sauvola's sensitivities ``k`` tried per polarity (Sauvola & Pietikainen 2000 use
        0.5 on documents); the component whose boundary lies on the strongest edge wins.
    denoise : float
        Gaussian smoothing before thresholding, sigma in feature scales.
    denoise_snr : float
        Cap on the smoothing: sigma in px at most this over the image's contrast-to-noise
        ratio of single pixels (clean images keep their edges sharp).
    min_denoise_px : float
        Smallest smoothing sigma, px.
    low_snr : float
        Below this contrast-to-noise ratio of single pixels the smoothing grows, up to
        twice.
    nlm_below_snr : float
        Below this contrast-to-noise ratio of single pixels the classical path thresholds a
        non-local-means denoised copy of the image (:func:`segsem_lite.threshold.denoise_for_threshold`);
        0 never does. The model and edge placement keep the raw image.
    nlm_h : float
        Non-local means' filter strength, in noise standard deviations.
    polarity : {"auto", "bright", "dark"}
        Which side of the threshold is the feature: ``auto`` tries both per target (a
        feature may be darker than its surroundings, brighter, or a dark interior inside
        a bright edge ring); a meta.csv ``tone`` column sets it per target.
    min_edge_ratio : float
        The winning boundary's median gradient must be this many times the median
        gradient of the image's noise alone (white noise of the measured strength,
        smoothed alike), else there is no feature at the prompt (a flat or pure-noise
        image).
    search_radius : float
        When nothing qualifies at the prompt, the nearest feature within this many
        feature scales is taken.
    max_area_fraction : float
        A component larger than this fraction of the image is the background, not a
        feature.
    scale_factors : tuple of float
        Multiples of the image's feature scale tried in turn per target until one finds a
        feature at the prompt (the design's size, when given, is used alone).
    ridge_symmetry : float
        A bright ridge along the boundary whose flanks' half-widths differ by less than
        this factor is an edge ring, and the boundary moves to its peak; a one-sided
        band keeps the boundary on its steep flank. 0 never moves it.
    charging_tails : bool
        Look for a charging tail along the scan in each image's first pass
        (:mod:`segsem_lite.charging`); where one explains the image, threshold again
        without it, and keep that pass when its features explain the image better. Its edges
        are then placed on the raw image less the tail.
    charging_rounds : int
        How many times the tail is fitted and removed at most: each round fits it on the
        features of the pass kept last (a first pass misled by the tail misleads its fit
        too), and the rounds stop when a pass explains the image no better or the same
        decay length comes back.
    charging_snrs : tuple of float
        The Wiener filter's signal-to-noise ratios tried for each removal
        (:func:`segsem_lite.charging.remove_scan_tail`), the pass whose features explain the
        image best kept. A high one restores the material step at the edges where the noise
        allows; a low one does not blow up the slow variations along the scan that a tail
        cancelling the material step far from the edges leaves almost unseen.
    """

    window: float = 2.0
    k_values: tuple = (-0.5, -0.35, -0.25, -0.15, -0.07, 0.0, 0.07, 0.15, 0.25, 0.35, 0.5)
    denoise: float = 0.08
    denoise_snr: float = 12.0
    min_denoise_px: float = 1.0
    low_snr: float = 3.0
    nlm_below_snr: float = 3.0
    nlm_h: float = 0.8
    polarity: str = "auto"
    min_edge_ratio: float = 1.8
    search_radius: float = 0.5
    max_area_fraction: float = 0.5
    ridge_symmetry: float = 1.6
    scale_factors: tuple = (1.0, 0.5, 2.0)
    charging_tails: bool = True
    charging_rounds: int = 3
    charging_snrs: tuple = (20.0, 2.0)

    def __post_init__(self) -> None:
        _require(len(self.scale_factors) > 0 and all(float(f) > 0 for f in self.scale_factors),
                 f"scale_factors={self.scale_factors!r}: expected positive multiples of the feature scale")
        _require(int(self.charging_rounds) >= 1, f"charging_rounds={self.charging_rounds!r}: expected 1 or more")
        _require(len(self.charging_snrs) > 0 and all(float(v) > 0 for v in self.charging_snrs),
                 f"charging_snrs={self.charging_snrs!r}: expected positive signal-to-noise ratios")
        _require(self.ridge_symmetry >= 0, f"ridge_symmetry={self.ridge_symmetry!r}: expected >= 0")
        _require(self.window > 0, f"window={self.window!r}: expected a positive number of feature scales")
        _require(len(self.k_values) > 0 and all(-1.0 < float(k) < 1.0 for k in self.k_values),
                 f"k_values={self.k_values!r}: expected Sauvola's k values in (-1, 1)")
        _require(self.denoise >= 0, f"denoise={self.denoise!r}: expected >= 0")
        _require(self.denoise_snr > 0, f"denoise_snr={self.denoise_snr!r}: expected > 0")
        _require(self.low_snr >= 0, f"low_snr={self.low_snr!r}: expected >= 0")
        _require(self.min_denoise_px >= 0, f"min_denoise_px={self.min_denoise_px!r}: expected >= 0")
        _require(self.polarity in ("auto", "bright", "dark"),
                 f"polarity={self.polarity!r}: expected 'auto', 'bright' or 'dark'")
        _require(self.min_edge_ratio >= 0, f"min_edge_ratio={self.min_edge_ratio!r}: expected >= 0")
        _require(self.search_radius >= 0, f"search_radius={self.search_radius!r}: expected >= 0")
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
    compact_harmonics : int
        A final mask of one contour that does not touch the image border, at most
        ``compact_max_px`` across, and within ``compact_tolerance_px`` (RMS) of its Fourier
        harmonics up to this one (a small contact hole or pillar) takes that smooth contour:
        its edge noise averages out over the whole outline
        (:func:`segsem_lite.contours.smooth_compact`). 0 never smooths.
    compact_tolerance_px : float
        How far (RMS, px) the contour may lie from its smooth version.
    compact_max_px : float
        Largest mean diameter (px) of a feature that is smoothed: a larger outline shows its
        own shape.
    """

    closing_nm: float = 2.0
    fill_holes: bool = True
    min_speck_nm2: float = 25.0
    keep_prompted: bool = True
    compact_harmonics: int = 2
    compact_tolerance_px: float = 1.0
    compact_max_px: float = 20.0

    def __post_init__(self) -> None:
        _require(self.closing_nm >= 0, f"closing_nm={self.closing_nm!r}: expected >= 0")
        _require(self.min_speck_nm2 >= 0, f"min_speck_nm2={self.min_speck_nm2!r}: expected >= 0")
        _require(int(self.compact_harmonics) == self.compact_harmonics and self.compact_harmonics >= 0,
                 f"compact_harmonics={self.compact_harmonics!r}: expected a whole number >= 0")
        _require(self.compact_tolerance_px >= 0,
                 f"compact_tolerance_px={self.compact_tolerance_px!r}: expected >= 0 px")
        _require(self.compact_max_px >= 0, f"compact_max_px={self.compact_max_px!r}: expected >= 0 px")


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
        How far along the normal, each way, the edge ridge is looked for; never further than
        the mask's half width (its largest inscribed radius) nor under 3 px.
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
    min_prominence : float
        The mean profile across the mask's contour must show a ridge: its maximum inside
        the search range stands above both ends by at least this share of the profile's
        range. A step edge or a dome (a pillar or a line brighter all through, no edge
        ring) has none: it is a step edge.
    step_edges : bool
        Place step edges (no ridge) where the denoised profile crosses the level halfway
        between the feature's inside and its surroundings (the 50 % threshold of CD-SEM
        metrology). Off: a mask without a ridge is left as it was.
    pool_targets : int
        With at least this many masks of openings (``Target.feature``) of one image left where
        they were (no ridge, no clean step), their mean profile across the contours, pooled,
        may show the faint ring no single mask shows, and place all of them
        (:func:`segsem_lite.edges.place_pooled_ring`); 0: never.
    array_template : bool
        With at least ``pool_targets`` masks of one image from the classical path, see them as an
        array of copies of one shape: their mean patch, each one registered to it, gives the shape
        (edge placement on the mean patch) and each feature keeps its own position and, as far as
        the noise lets it be measured, its size (:func:`segsem_lite.edges.place_array_template`).
        Used only when most masks overlap the shape as placed.
    feature : {"auto", "resist", "opening"}
        What the features are made of, for targets whose meta.csv does not say
        (``Target.feature``); "auto": not known.
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
    min_prominence: float = 0.3
    step_edges: bool = True
    pool_targets: int = 20
    array_template: bool = True
    feature: str = "auto"

    def __post_init__(self) -> None:
        _require(self.search_nm > 0, f"search_nm={self.search_nm!r}: expected a positive distance in nm")
        _require(self.denoise_sigma_nm >= 0, f"denoise_sigma_nm={self.denoise_sigma_nm!r}: expected >= 0")
        _require(self.smooth_nm >= 0, f"smooth_nm={self.smooth_nm!r}: expected >= 0")
        _require(self.polarity in ("bright_edge", "dark_edge"),
                 f"polarity={self.polarity!r}: expected 'bright_edge' or 'dark_edge'")
        _require(0.0 <= self.min_found <= 1.0, f"min_found={self.min_found!r}: expected a share in [0, 1]")
        _require(self.pool_targets >= 0, f"pool_targets={self.pool_targets!r}: expected a count >= 0")
        _require(self.feature in ("auto", "resist", "opening"),
                 f"feature={self.feature!r}: expected 'auto', 'resist' (lines, pillars) or 'opening' (trenches, holes)")
        _require(0.0 <= self.min_prominence <= 1.0,
                 f"min_prominence={self.min_prominence!r}: expected a share in [0, 1]")


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
