"""The three-stage gate on SAM2 mask candidates (SegSEM III-C1).

(1) Confidence: the predicted IoU must reach ``tau_conf``. (2) Topology: one connected
region. (3) Geometry: area and aspect ratio within a tolerance of the design, where a
design is known. The best-scoring candidate passing all three is used; if none
passes, the fallback runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GateConfig
from .dataset import Design
from .morphology import large_regions

__all__ = ["CandidateCheck", "GateDecision", "mask_aspect", "check_candidate", "gate_candidates", "regate"]


def mask_aspect(mask: np.ndarray) -> float | None:
    """Long side over short side of a mask's bounding box, or None when empty."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if not len(rows):
        return None
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    return float(max(h, w) / min(h, w))


@dataclass(frozen=True)
class CandidateCheck:
    """The gate's verdict on one candidate.

    Attributes
    ----------
    index : int
        Position among the candidates.
    score : float
        Predicted IoU.
    failed : tuple of str
        Checks failed: ``confidence``, ``topology``, ``geometry``.
    reasons : tuple of str
        One human-readable line per failed check.
    n_regions : int
    area_px : int
    aspect : float or None
    """

    index: int
    score: float
    failed: tuple[str, ...]
    reasons: tuple[str, ...]
    n_regions: int
    area_px: int
    aspect: float | None

    @property
    def passed(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one target.

    Attributes
    ----------
    accepted_index : int or None
        Candidate used, or None when the fallback runs.
    checks : tuple of CandidateCheck
        One per candidate, in candidate order.
    """

    accepted_index: int | None
    checks: tuple[CandidateCheck, ...]

    @property
    def accepted(self) -> bool:
        return self.accepted_index is not None

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Checks failed by the best-scoring candidate (empty when one was accepted)."""
        if self.accepted or not self.checks:
            return ()
        best = max(self.checks, key=lambda c: c.score)
        return best.failed

    def summary(self) -> str:
        """One line: which candidate was used, or why each was rejected."""
        if self.accepted:
            c = self.checks[self.accepted_index]
            return f"accepted candidate {c.index} (predicted IoU {c.score:.3f})"
        if not self.checks:
            return "no candidates"
        return "; ".join(f"#{c.index}: " + ", ".join(c.reasons) for c in self.checks)


def _relative(value: float, reference: float) -> float:
    return abs(value - reference) / reference if reference else np.inf


def check_candidate(mask: np.ndarray, score: float, *, index: int = 0, design: Design | None = None,
                    config: GateConfig = GateConfig()) -> CandidateCheck:
    """Run the three checks on one candidate mask; see :func:`gate_candidates`."""
    failed, reasons = [], []
    if not score >= config.tau_conf:
        failed.append("confidence")
        reasons.append(f"confidence: predicted IoU {score:.3f} < tau_conf {config.tau_conf:.2f}")
    core, n_regions = large_regions(mask, min_px=config.min_region_px)  # specks count neither as regions nor as extent
    if not 1 <= n_regions <= config.max_regions:
        failed.append("topology")
        reasons.append(f"topology: {n_regions} connected regions, expected 1" if config.max_regions == 1
                       else f"topology: {n_regions} connected regions, expected 1 to {config.max_regions}")
    area = int(np.count_nonzero(core))
    aspect = mask_aspect(core)
    if design is not None and design.known and area:
        geo = []
        if design.area_px:
            d = _relative(area, design.area_px)
            if d > config.area_tolerance:
                signed = (area - design.area_px) / design.area_px
                geo.append(f"area {area} px vs design {design.area_px:.0f} px ({signed:+.0%}, tolerance {config.area_tolerance:.0%})")
        if design.aspect and aspect is not None:
            d = _relative(aspect, design.aspect)
            if d > config.aspect_tolerance:
                geo.append(f"aspect {aspect:.2f} vs design {design.aspect:.2f} ({d:.0%} off, tolerance {config.aspect_tolerance:.0%})")
        if geo:
            failed.append("geometry")
            reasons.append("geometry: " + "; ".join(geo))
    return CandidateCheck(index=index, score=float(score), failed=tuple(failed), reasons=tuple(reasons),
                          n_regions=n_regions, area_px=area, aspect=aspect)


def gate_candidates(masks: np.ndarray, scores: np.ndarray, *, design: Design | None = None,
                    config: GateConfig = GateConfig()) -> GateDecision:
    """Choose the best-scoring candidate that passes all three checks.

    Parameters
    ----------
    masks : (K, M, N) bool ndarray
        Mask candidates (SAM2's multimask output).
    scores : (K,) ndarray
        Their predicted IoU.
    design : Design, optional
        Design area and aspect for the geometric check; skipped when unknown.
    config : GateConfig

    Returns
    -------
    GateDecision
    """
    masks = np.asarray(masks, dtype=bool)
    scores = np.asarray(scores, dtype=float).ravel()
    if masks.ndim != 3 or len(masks) != len(scores):
        raise ValueError(f"Invalid candidates: expected masks KxMxN and K scores, got {masks.shape} and {scores.shape}")
    checks = tuple(check_candidate(m, s, index=i, design=design, config=config) for i, (m, s) in enumerate(zip(masks, scores)))
    passing = [c for c in checks if c.passed]
    best = max(passing, key=lambda c: c.score).index if passing else None
    return GateDecision(accepted_index=best, checks=checks)


def regate(results, designs, config: GateConfig = GateConfig()) -> list[GateDecision]:
    """The gate's decisions under another configuration, from recorded candidates.

    Parameters
    ----------
    results : sequence of SegmentationResult
        Results of :func:`segsem_lite.pipeline.segment_image` run with ``keep_candidates=True``.
    designs : sequence of Design or None
        The design of each result's target.
    config : GateConfig

    Returns
    -------
    list of GateDecision
        Without running the model again: the candidates and their predicted IoU are reused.
    """
    out = []
    for r, d in zip(results, designs):
        if r.candidates is None:
            raise ValueError("Invalid result: run segment_image with keep_candidates=True to regate it")
        out.append(gate_candidates(r.candidates, np.asarray(r.candidate_scores), design=d, config=config))
    return out
