"""The SegSEM decision pipeline: candidates, gate, fallback, refinement, contours.

One composition point: the chapters, the CLI and the tests call :func:`segment_image`
(or :func:`segment_target` for one target). The model is any object with the
predictor's methods (:class:`MaskSource`), so this module never imports torch. With no
model it is the standard (traditional) pipeline: Sauvola, refinement, contours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from .charging import MIN_GAIN, fit_scan_tail, near_edges, remove_scan_tail
from .config import FallbackConfig, PipelineConfig, nm_to_px
from .contours import contours_to_nm, extract_contours, fill_polygon, smooth_compact, sobel_edges
from .coords import point_in_image
from .dataset import Design, Target
from .edges import ARRAY_MIN_AGREEMENT, paste_mask, place_array_template, place_edges, place_pooled_ring
from .errors import SegSEMError
from .gate import GateDecision, gate_candidates
from .metrics import iou
from .morphology import refine_mask
from .scale import ImageScale, measure_scale, to_unit_float
from .threshold import MIN_IMAGE_SIDE, component_at, denoise_for_threshold, fallback_mask, inside_depth

__all__ = ["MaskSource", "SegmentationResult", "segment_target", "segment_image", "check_image", "SOURCES"]

#: Where a final mask came from: the model (accepted by the gate), the fallback after the
#: gate rejected every candidate, or the standard pipeline (no model).
SOURCES = ("sam2", "fallback", "standard")


@runtime_checkable
class MaskSource(Protocol):
    """What the pipeline needs of a model: SAM2's predictor vocabulary.

    ``set_image`` encodes an image once; ``predict`` returns K candidate masks at the
    image's resolution, their predicted IoU and low-resolution logits, for a point
    prompt given as ``point_coords`` (N, 2) points (x, y) with ``point_labels`` (N,).
    ``region_xyxy``, the design's bounding box when known, tells a model that looks
    through a window where the target is; models may ignore it.
    """

    name: str

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, point_coords: np.ndarray, point_labels: np.ndarray, box: np.ndarray | None = None,
                multimask_output: bool = True, region_xyxy: tuple | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class SegmentationResult:
    """The outcome for one target.

    Attributes
    ----------
    prompt_xy : (float, float)
    mask : (M, N) bool ndarray
        Final refined mask.
    contours : list of (K, 2) ndarray
        Sub-pixel contours, points (x, y) in px, longest first.
    edges : (M, N) bool ndarray
        Sobel edge pixels of the final mask.
    source : {"sam2", "fallback", "standard"}
    decision : GateDecision or None
        The gate's decision (None for the standard pipeline).
    candidate_scores : list of float
        Predicted IoU of each model candidate.
    timings_ms : dict of str to float
        Per stage: ``encode``, ``predict``, ``gate``, ``fallback``, ``refine``, ``edge``
        (sub-pixel edge placement), ``contours``.
    pixel_size_nm : float
    label, stem : optional
        The target's identity, when known.
    flag : str
        Why the result needs a look ("" when it does not): the gate rejected every
        candidate and the fallback found nothing either, so the best candidate is
        returned as it is.
    scan_tail_px : float
        The decay length (px along the scan) of the charging tail removed from the image
        before the fallback thresholded it again (:mod:`segsem_lite.charging`); 0 when the
        image showed none, or removing it did not explain the image better.
    edge_kind : str
        How edge placement placed the contour: ``"ridge"``, ``"step"`` (its half level),
        ``"pooled_ring"`` (a ring shown only by the image's masks together,
        :func:`segsem_lite.edges.place_pooled_ring`), ``"array"`` (one shape for an array of
        copies of it, :func:`segsem_lite.edges.place_array_template`), or ``""`` (not placed).
    """

    prompt_xy: tuple[float, float]
    mask: np.ndarray
    contours: list[np.ndarray]
    edges: np.ndarray
    source: str
    decision: GateDecision | None
    candidate_scores: list[float]
    timings_ms: dict[str, float]
    pixel_size_nm: float
    label: Any = None
    stem: str | None = None
    candidates: np.ndarray | None = field(default=None, repr=False)
    flag: str = ""
    scan_tail_px: float = 0.0
    edge_kind: str = ""

    @property
    def contours_nm(self) -> list[np.ndarray]:
        """Contours in nm; see :func:`segsem_lite.contours.contours_to_nm`."""
        return contours_to_nm(self.contours, self.pixel_size_nm)

    @property
    def total_ms(self) -> float:
        return float(sum(self.timings_ms.values()))

    @property
    def gate_reasons(self) -> str:
        """Why the gate decided as it did (empty for the standard pipeline)."""
        return "" if self.decision is None else self.decision.summary()


def check_image(image: np.ndarray, *, where: str = "image") -> np.ndarray:
    """The image as an array, or a :class:`SegSEMError` naming ``where`` if it is not 2-D or too small."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise SegSEMError(f"{where} of shape {img.shape}: expected a 2-D grayscale image")
    if min(img.shape) < MIN_IMAGE_SIDE:
        raise SegSEMError(f"{where} of {img.shape[1]}x{img.shape[0]} px: too small, expected at least "
                          f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    return img


#: A fallback region more than this factor off its design's area (either way) is tried again at the image's own
#: scale instead of the design's.
OFF_DESIGN_AREA = 1.5


def _reach_px(config: PipelineConfig, ps: float) -> int:
    """How far past a mask refinement and edge placement look, px (edge placement's own crop included)."""
    edge = config.edge
    reach = nm_to_px(config.refine.closing_nm, ps) + 2
    if edge.enabled:
        reach += 2 * nm_to_px(edge.search_nm, ps) + nm_to_px(6.0, ps) + 3 * nm_to_px(edge.denoise_sigma_nm, ps) + 2
    return int(np.ceil(reach)) + 4


def _territory_scale(lands: np.ndarray, own: int) -> float:
    """Half the inscribed width of a target's territory (its cell among the image's targets): half the local
    pitch, the size of a feature of a dense array."""
    rows, cols = np.nonzero(lands == own)
    cell = np.zeros((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), bool)
    cell[rows - rows.min(), cols - cols.min()] = True
    return max(4.0, float(inside_depth(cell).max()))


def _work_box(mask: np.ndarray, prompt_xy, margin: int) -> tuple[int, int, int, int]:
    """Rows and columns (r0, r1, c0, c1) around a mask and its prompt, with a margin, clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r, c = int(round(prompt_xy[1])), int(round(prompt_xy[0]))
    return (max(0, min(rows[0], r) - margin), min(mask.shape[0], max(rows[-1], r) + margin + 1),
            max(0, min(cols[0], c) - margin), min(mask.shape[1], max(cols[-1], c) + margin + 1))


def segment_target(
    image: np.ndarray,
    prompt_xy: tuple[float, float],
    *,
    design: Design | None = None,
    model: MaskSource | None = None,
    config: PipelineConfig = PipelineConfig(),
    pixel_size_nm: float | None = None,
    image_is_set: bool = False,
    label: Any = None,
    stem: str | None = None,
    keep_candidates: bool = False,
    scale: ImageScale | None = None,
    tone: str | None = None,
    feature: str | None = None,
    size_px: float | None = None,
    box_xyxy: tuple | None = None,
    unit_image: np.ndarray | None = None,
    territory: tuple | None = None,
) -> SegmentationResult:
    """Segment one target: model candidates through the gate, else the fallback; refine; contour.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 ndarray
        Raw SEM image (not denoised: the model learns the noise texture).
    prompt_xy : (float, float)
        Prompt point (x = column, y = row) in pixels.
    design : Design, optional
        Design area and aspect for the gate's geometric check.
    model : MaskSource, optional
        Source of mask candidates; None runs the standard pipeline.
    config : PipelineConfig
    pixel_size_nm : float, optional
        Defaults to ``config.pixel_size_nm``.
    image_is_set : bool
        The model already encoded this image (``model.set_image``).
    label, stem : optional
        Carried into the result.
    keep_candidates : bool
        Keep the model's candidate masks in the result (for figures).
    scale : ImageScale, optional
        The image's measured feature scale and noise, for the fallback; measured when
        omitted.
    tone : {"bright", "dark"}, optional
        The feature's tone when the user knows it; decided from the image otherwise.
    feature : {"resist", "opening"}, optional
        What the feature is made of when the user knows it (else ``config.edge.feature``):
        edge placement then looks for edge brightening on the resist side only.
    size_px, box_xyxy : optional
        Width and box of the feature when discovery saw it (:class:`Target`): the
        fallback's scale and extent, and the model's box prompt when there is no design.
    unit_image : (M, N) float32 ndarray, optional
        The image the classical path thresholds, in [0, 1] and denoised when noisy
        (:func:`segsem_lite.threshold.denoise_for_threshold`), made once by
        :func:`segment_image` for all its targets; ``scale`` is then its scale.
    territory : (lands, seeds, k), optional
        ``territories`` of the image's targets, and this target's number k: a
        fallback region that takes in another target (or lies in another's territory) is
        sought again at the scale of the target's own territory (half the local pitch),
        else cut to the pixels whose nearest target is k, so a neighbour is never merged
        in, even where the print bridges them.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    SegSEMError
        For an image that is not 2-D or too small, a prompt outside the image, or no
        feature found near the prompt.
    """
    img = check_image(image)
    ps = float(pixel_size_nm) if pixel_size_nm else config.pixel_size_nm
    if not point_in_image(prompt_xy, img.shape):
        raise SegSEMError(f"prompt (x={prompt_xy[0]:g}, y={prompt_xy[1]:g}) is outside the image of "
                          f"{img.shape[1]}x{img.shape[0]} px")
    timings: dict[str, float] = {}
    decision = None
    scores: list[float] = []
    candidates = None
    mask = None
    if model is not None:
        if not image_is_set:
            t0 = time.perf_counter()
            model.set_image(img)
            timings["encode"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        region = design.bbox_xyxy() if design is not None else None
        region = region if region is not None else box_xyxy
        masks, ious, _ = model.predict(np.array([prompt_xy], dtype=np.float32), np.array([1], dtype=np.int32),
                                       multimask_output=True, region_xyxy=region)
        timings["predict"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        decision = gate_candidates(masks, ious, design=design, config=config.gate)
        timings["gate"] = (time.perf_counter() - t0) * 1e3
        scores = [float(s) for s in np.ravel(ious)]
        candidates = np.asarray(masks, bool) if keep_candidates else None
        if decision.accepted:
            mask = np.asarray(masks[decision.accepted_index], bool)
    source = "sam2" if mask is not None else ("fallback" if model is not None else "standard")
    flag = ""
    if mask is None:
        t0 = time.perf_counter()
        box = design.bbox_xyxy() if design is not None else None
        if box is not None:
            size_px = min(box[2] - box[0], box[3] - box[1]) + 1
        if unit_image is None:
            unit_image, scale = denoise_for_threshold(to_unit_float(img), scale, config=config.fallback)
        mask = fallback_mask(unit_image, prompt_xy, config=config.fallback, pixel_size_nm=ps, scale=scale,
                             size_px=size_px, tone=tone, extent_xyxy=box_xyxy)
        area = design.area_px if design is not None else None
        if box is not None and area and abs(np.log((mask.sum() + 1) / area)) > np.log(OFF_DESIGN_AREA):
            # far from its design's area: the design's box may have misjudged the scale (an L or a T is far
            # narrower than its box); the image's own scale is asked, and the region nearer the design's area wins
            again = fallback_mask(unit_image, prompt_xy, config=config.fallback, pixel_size_nm=ps, scale=scale,
                                  tone=tone, extent_xyxy=box_xyxy)
            if again.any() and abs(np.log(again.sum() / area)) < abs(np.log((mask.sum() + 1) / area)):
                mask = again
        if territory is not None and mask.any():
            lands, seeds, own = territory

            def foreign(m: np.ndarray) -> bool:
                """The region takes in another target, or lies wholly in another's territory."""
                on = seeds[m]
                return bool(((on > 0) & (on != own)).any()) or not (lands[m] == own).any()

            theirs = foreign(mask)
            if theirs and size_px is None and design is None:
                # the image's scale was too coarse here: the scale of the target's own territory (half its inscribed
                # width: half the local pitch) is asked
                again = fallback_mask(unit_image, prompt_xy, config=config.fallback, pixel_size_nm=ps, scale=scale,
                                      size_px=_territory_scale(lands, own), tone=tone)
                if again.any() and not foreign(again):
                    mask, theirs = again, False
            if theirs:  # cut to its own territory
                r0, r1, c0, c1 = _work_box(mask, prompt_xy, 1)
                cut = mask[r0:r1, c0:c1] & (lands[r0:r1, c0:c1] == own)
                kept = component_at(cut, (prompt_xy[0] - c0, prompt_xy[1] - r0),
                                    search_radius_px=max(2.0, (size_px or 4) / 2))
                if not kept.any() and cut.any():  # the prompt's own pixel is not in the region: its largest piece
                    n, parts, stats, _ = cv2.connectedComponentsWithStats(cut.view(np.uint8), connectivity=8)
                    kept = parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
                if kept.any():
                    mask = np.zeros_like(mask)
                    mask[r0:r1, c0:c1] = kept
        timings["fallback"] = (time.perf_counter() - t0) * 1e3
        if not mask.any() and scores:
            # never silently dropped: the model's best candidate, flagged with why
            best = int(np.argmax(scores))
            mask = np.asarray(masks[best], bool)
            source = "sam2"
            flag = (f"gate rejected every candidate ({decision.summary()}) and the fallback found no feature: "
                    f"candidate {best} returned unchecked")
        if not mask.any():
            raise SegSEMError(f"prompt (x={prompt_xy[0]:g}, y={prompt_xy[1]:g}): no feature found at or near the "
                              f"prompt (no edge above the noise: background, or no contrast)")
    # refinement, edge placement and contours work on the mask's box, with a margin wider than what they reach
    r0, r1, c0, c1 = _work_box(mask, prompt_xy, _reach_px(config, ps))
    local = (prompt_xy[0] - c0, prompt_xy[1] - r0)
    sub = mask[r0:r1, c0:c1]
    t0 = time.perf_counter()
    sub = refine_mask(sub, prompt_xy=local, config=config.refine, pixel_size_nm=ps)
    timings["refine"] = (time.perf_counter() - t0) * 1e3
    contours, edge_kind = None, ""
    if config.edge.enabled and (source != "standard" or config.edge.standard):
        t0 = time.perf_counter()
        placed = place_edges(img[r0:r1, c0:c1], sub, config=config.edge, pixel_size_nm=ps,
                             feature=feature or config.edge.feature)
        sub, contours, edge_kind = placed.mask, placed.contours, placed.kind
        timings["edge"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    if contours is None:
        contours = extract_contours(sub)
    if not contours:
        raise SegSEMError(f"prompt (x={prompt_xy[0]:g}, y={prompt_xy[1]:g}): the mask found is too small to have "
                          f"a contour ({int(sub.sum())} px)")
    h, w = img.shape
    on_border = (r0 == 0 and sub[0].any()) or (r1 == h and sub[-1].any()) or (c0 == 0 and sub[:, 0].any()) or \
        (c1 == w and sub[:, -1].any())
    if config.refine.compact_harmonics and len(contours) == 1 and not on_border:
        smooth = smooth_compact(contours[0], harmonics=config.refine.compact_harmonics,
                                tolerance_px=config.refine.compact_tolerance_px,
                                max_size_px=config.refine.compact_max_px)
        filled = fill_polygon(smooth[:-1], sub.shape) if smooth is not None else None
        if filled is not None and filled.any():
            contours, sub = [smooth], filled
    offset = np.array([c0, r0], float)
    contours = [c + offset for c in contours]
    mask = np.zeros(img.shape, bool)
    mask[r0:r1, c0:c1] = sub
    edges = np.zeros(img.shape, bool)
    edges[r0:r1, c0:c1] = sobel_edges(sub)
    timings["contours"] = (time.perf_counter() - t0) * 1e3
    return SegmentationResult(prompt_xy=tuple(map(float, prompt_xy)), mask=mask, contours=contours, edges=edges,
                              source=source, decision=decision, candidate_scores=scores, timings_ms=timings,
                              pixel_size_nm=ps, label=label, stem=stem, candidates=candidates, flag=flag,
                              edge_kind=edge_kind)


def _in_field(t: Target, x0: int, y0: int) -> Target:
    """A target with its prompt and box moved into a field whose corner is (x0, y0)."""
    box = t.box_xyxy
    return replace(t, prompt_xy=(t.prompt_xy[0] - x0, t.prompt_xy[1] - y0),
                   box_xyxy=None if box is None else (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0))


def _to_image(res: SegmentationResult, field: tuple[int, int, int, int], shape: tuple[int, int]) -> SegmentationResult:
    """A result found in a field, in the coordinates and shape of the whole image."""
    x0, y0, x1, y1 = field

    def pad(a):
        if a is None:
            return None
        out = np.zeros(a.shape[:-2] + tuple(shape), a.dtype)
        out[..., y0:y1, x0:x1] = a
        return out

    offset = np.array([x0, y0], float)
    return replace(res, prompt_xy=(res.prompt_xy[0] + x0, res.prompt_xy[1] + y0), mask=pad(res.mask),
                   edges=pad(res.edges), contours=[c + offset for c in res.contours], candidates=pad(res.candidates))


def territories(targets: Sequence[Target], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each pixel's nearest target, and where each target is known to be; None for fewer than two targets.

    A target is known by its prompt point; a fallback region that takes in another target's
    prompt has merged with it (a bridge in the print, a charging tail), and is cut back to
    the pixels nearer its own target than to any other: its territory. When the targets
    carry design polygons (at least two do), the design draws every feature's extent:
    territories are nearest-polygon, and every pixel is known as its nearest design's.

    Returns
    -------
    (lands, seeds) : (M, N) int32 ndarrays, or None
        ``lands``: the nearest target (1..n, in the order of ``targets``) of every pixel;
        ``seeds``: each target's known pixels, 0 elsewhere (``lands`` itself with a design).
    """
    import cv2

    if len(targets) < 2:
        return None
    seeds = np.zeros(shape, np.int32)
    designed = sum(bool(t.design is not None and t.design.polygons) for t in targets) >= 2
    if designed:
        for i, t in enumerate(targets):
            for p in t.design.polygons if t.design is not None else ():
                # pixel centres at integers: 4 fractional bits keep the polygon where it is
                cv2.fillPoly(seeds, [np.round(np.asarray(p, float) * 16).astype(np.int32)], i + 1, shift=4)
    else:
        for i, t in enumerate(targets):
            r, c = int(round(t.prompt_xy[1])), int(round(t.prompt_xy[0]))
            if 0 <= r < shape[0] and 0 <= c < shape[1]:
                seeds[r, c] = i + 1
    if np.count_nonzero(np.bincount(seeds.ravel(), minlength=len(targets) + 1)[1:]) < 2:
        return None
    # the nearest seed pixel of every pixel (its own label), mapped to that seed's target
    _, nearest = cv2.distanceTransformWithLabels((seeds == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    known = seeds > 0
    target_of = np.zeros(int(nearest.max()) + 1, np.int32)
    target_of[nearest[known]] = seeds[known]
    lands = target_of[nearest]
    # a design draws every feature's extent: a pixel nearer another design belongs to that feature
    return lands, (lands if designed else seeds)


def segment_image(
    image: np.ndarray,
    targets: Sequence[Target],
    *,
    model: MaskSource | None = None,
    config: PipelineConfig = PipelineConfig(),
    keep_candidates: bool = False,
    field: tuple[int, int, int, int] | None = None,
) -> list[SegmentationResult | SegSEMError]:
    """Segment every target of one image, encoding the image once.

    A fallback region that takes in another target (its prompt, or with a design any pixel
    nearer another design polygon) is cut to its territory, the pixels nearer its own
    target than any other's (``segsem_lite.pipeline.territories``). Without a design, it
    is first sought again at the territory's own scale (half its inscribed width): in a
    dense array the image's scale can be a larger feature's, at which neighbours merge.

    When the first pass's features show a charging tail along the scan, the classical
    path's targets are thresholded again on the image without it, and that pass is kept
    when its features explain the image better (``config.fallback.charging_tails``;
    :mod:`segsem_lite.charging`), for up to ``config.fallback.charging_rounds`` rounds; its
    results carry the tail's length in ``scan_tail_px``.

    Parameters
    ----------
    image : (M, N) ndarray
    targets : sequence of Target
    model : MaskSource, optional
    config : PipelineConfig
    keep_candidates : bool
    field : (x0, y0, x1, y1), optional
        The part of the image that shows the sample (without its data bar): only it is
        encoded and thresholded. Results are in the whole image's coordinates and shape.

    Returns
    -------
    list
        Per target, a :class:`SegmentationResult` or the :class:`SegSEMError` that
        stopped it (a bad target never stops the others).
    """
    img = check_image(image)
    full = img.shape
    if field is not None and tuple(field) != (0, 0, full[1], full[0]):
        x0, y0, x1, y1 = (int(v) for v in field)
        img = check_image(img[y0:y1, x0:x1], where=f"field ({x0}, {y0}, {x1}, {y1}) of the image")
        targets = [_in_field(t, x0, y0) for t in targets]
    else:
        field = None
    encode_ms = 0.0
    if model is not None and targets:
        t0 = time.perf_counter()
        model.set_image(img)
        encode_ms = (time.perf_counter() - t0) * 1e3
    raw = to_unit_float(img)
    unit, scale = denoise_for_threshold(raw, config=config.fallback) if targets else (None, None)
    split = territories(targets, img.shape)
    # what each feature is made of: as the user says per target, else as the configuration says
    features = [t.feature or config.edge.feature for t in targets]

    def run(todo: Sequence[int], unit_image: np.ndarray, unit_scale, seen: np.ndarray | None = None) -> dict:
        # ``seen``: the image the edges are placed on (without its charging tail, the raw image less the tail)
        seen = img if seen is None else seen
        got: dict[int, SegmentationResult | SegSEMError] = {}
        for i in todo:
            t = targets[i]
            try:
                got[i] = segment_target(seen, t.prompt_xy, design=t.design, model=model, config=config,
                                        pixel_size_nm=t.pixel_size_nm, image_is_set=True, label=t.label, stem=t.stem,
                                        keep_candidates=keep_candidates, scale=unit_scale, tone=t.tone,
                                        feature=features[i], size_px=t.size_px, box_xyxy=t.box_xyxy,
                                        unit_image=unit_image,
                                        territory=None if split is None else (*split, i + 1))
            except SegSEMError as exc:
                got[i] = exc
        return got

    results, seen = run(range(len(targets)), unit, scale), None
    if config.fallback.charging_tails and targets:
        results, seen = _without_scan_tail(results, unit, raw, run, config.fallback)
    if config.edge.enabled and config.edge.pool_targets:
        # edges pooled over targets are placed on the image without its charging tail, when one was removed
        seen = img if seen is None else seen
        _pooled_ring(results, features, seen, config)
        if config.edge.array_template:
            _array_template(results, features, seen, config)
    out: list[SegmentationResult | SegSEMError] = []
    for i in range(len(targets)):
        res = results[i]
        if isinstance(res, SegmentationResult) and model is not None:
            res.timings_ms["encode"] = encode_ms / len(targets)
        out.append(res if field is None or not isinstance(res, SegmentationResult) else _to_image(res, field, full))
    return out


def _poolable(results: dict, config: PipelineConfig, also=lambda i, r: True) -> list[int]:
    """The targets whose masks an image-level placement may pool: the classical path's results (the standard
    path's only with ``config.edge.standard``) that pass ``also(i, result)``; none unless there are
    ``config.edge.pool_targets`` or more, all of one pixel size."""
    placeable = ("fallback", "standard") if config.edge.standard else ("fallback",)
    keys = [i for i, r in results.items() if isinstance(r, SegmentationResult) and r.source in placeable and also(i, r)]
    if len(keys) < config.edge.pool_targets or len({results[i].pixel_size_nm for i in keys}) != 1:
        return []
    return keys


def _array_template(results: dict, features: Sequence[str], img: np.ndarray, config: PipelineConfig) -> None:
    """Place the classical path's masks of an array of copies of one shape with one shape, seen on their mean
    patch (:func:`segsem_lite.edges.place_array_template`), in place.

    Only images with ``config.edge.pool_targets`` such masks or more, of one pixel size and one kind of feature,
    are tried; each feature keeps its own size as far as the noise lets it be measured
    (:attr:`segsem_lite.edges.ArrayTemplate.sizes_px`). The masks are replaced only when most of them
    overlap the template as placed by :data:`segsem_lite.edges.ARRAY_MIN_AGREEMENT` or more (the features
    are copies of one shape). ``img`` is the image without its charging tail when one was removed: a mean patch
    of the image with it would carry the tails."""
    keys = _poolable(results, config)
    if not keys:
        return
    kinds = {features[i] for i in keys}
    if len(kinds) != 1:
        return
    t0 = time.perf_counter()
    got = place_array_template(img, [results[i].mask for i in keys], config=config.edge,
                               pixel_size_nm=results[keys[0]].pixel_size_nm, feature=kinds.pop())
    if got is None or not got.mask.any():
        return
    placed = {i: paste_mask(got.mask, tuple(c), img.shape, float(g))
              for i, c, g in zip(keys, got.centres, got.sizes_px) if np.isfinite(c).all()}
    # the features are copies of the template's: most masks from thresholding overlap it as placed
    if not placed or np.median([iou(results[i].mask, m) for i, m in placed.items()]) < ARRAY_MIN_AGREEMENT:
        return
    share = (time.perf_counter() - t0) * 1e3 / len(keys)
    for i in keys:
        res = results[i]
        res.timings_ms["edge"] = res.timings_ms.get("edge", 0.0) + share
        if i not in placed:
            continue
        mask = placed[i]
        contours = extract_contours(mask)
        if contours:
            res.mask, res.contours, res.edges, res.edge_kind = mask, contours, sobel_edges(mask), "array"


def _pooled_ring(results: dict, features: Sequence[str], img: np.ndarray, config: PipelineConfig) -> None:
    """Place the classical path's masks of openings that edge placement left as they were on the faint ring
    their contours show together (:func:`segsem_lite.edges.place_pooled_ring`), in place.

    Only targets the user says are openings (``Target.feature``, else ``config.edge.feature``) are pooled:
    edge brightening lies in the resist, so a ring just inside an opening's mask is resist the mask took in,
    while a ring just inside a resist feature's mask is the feature's own edge band, whose outer foot is
    already the edge. The image alone does not tell the two apart. Only images with
    ``config.edge.pool_targets`` such masks or more, all of one pixel size, are pooled."""
    keys = _poolable(results, config, lambda i, r: r.edge_kind in ("", "step") and features[i] == "opening")
    if not keys:
        return
    t0 = time.perf_counter()
    placed = place_pooled_ring(img, [results[i].mask for i in keys], config=config.edge,
                               pixel_size_nm=results[keys[0]].pixel_size_nm)
    if placed is None:
        return
    share = (time.perf_counter() - t0) * 1e3 / len(keys)
    for i, mask in zip(keys, placed[0]):
        res = results[i]
        contours = extract_contours(mask)
        if contours and mask is not res.mask:
            res.mask, res.contours, res.edges, res.edge_kind = mask, contours, sobel_edges(mask), "pooled_ring"
        res.timings_ms["edge"] = res.timings_ms.get("edge", 0.0) + share


def _feature_map(results, shape: tuple[int, int]) -> np.ndarray:
    f = np.zeros(shape, bool)
    for res in results:
        if isinstance(res, SegmentationResult):
            f |= res.mask
    return f


def _without_scan_tail(results: dict, unit: np.ndarray, raw: np.ndarray, run,
                       config: FallbackConfig) -> tuple[dict, np.ndarray | None]:
    """Results again on the image without its charging tail, when the first pass shows one
    (:mod:`segsem_lite.charging`). Only the classical path's results are redone (an accepted
    model mask does not threshold). Each removal is tried at every signal-to-noise ratio of
    ``config.charging_snrs``, and a pass is kept only when its feature map explains the image
    better than the pass kept before it, under the same model. Up to ``config.charging_rounds``
    times the tail is fitted again on the kept pass's features (a first pass that the tail
    misled gives a misled fit: on the second renderer's 104 holes of seed 2060 ``ind10_001``
    the decay length went 19 -> 9 px over two rounds). Each pass places its edges on ``raw`` (the image as taken,
    as float) less the tail. Returns the results and, when a pass without the tail was kept, that image (else
    None)."""
    first = _feature_map(results.values(), unit.shape)
    if not first.any():
        return results, None
    t0 = time.perf_counter()
    todo = [i for i, r in results.items() if not (isinstance(r, SegmentationResult) and r.source == "sam2")]
    kept, kept_map, tail_px, tried, kept_run_s = results, first, 0.0, set(), 0.0
    for _ in range(int(config.charging_rounds)):
        tail = fit_scan_tail(unit, kept_map, backward_above=MIN_GAIN)
        if not tail.explains() or tail.tau_px in tried:
            break
        tried.add(tail.tau_px)
        passes = []
        for snr in config.charging_snrs:
            cleaned = remove_scan_tail(unit, tail, snr=float(snr))
            t1 = time.perf_counter()
            seen = remove_scan_tail(raw, tail, snr=float(snr))
            again = {**results, **run(todo, cleaned, measure_scale(cleaned), seen)}
            passes.append((again, _feature_map(again.values(), unit.shape), time.perf_counter() - t1, seen))
        skip = near_edges(kept_map)
        for _, fmap, _, _ in passes:
            skip |= near_edges(fmap)
        residuals = [fit_scan_tail(unit, fmap, exclude=skip, backward_above=None).residual for _, fmap, _, _ in passes]
        best = int(np.argmin(residuals))
        if not residuals[best] < fit_scan_tail(unit, kept_map, exclude=skip, backward_above=None).residual:
            break
        (kept, kept_map, kept_run_s, kept_seen), tail_px = passes[best], tail.tau_px
    if kept is results:
        return results, None
    # the kept result's fallback time includes the first pass and its share of the fits and of the other passes
    # (its own pass is in its timings already)
    share = (time.perf_counter() - t0 - kept_run_s) * 1e3 / max(1, len(todo))
    for i in todo:
        res = kept[i]
        if isinstance(res, SegmentationResult):
            res.scan_tail_px = tail_px
            before = results[i].total_ms if isinstance(results[i], SegmentationResult) else 0.0
            res.timings_ms["fallback"] = res.timings_ms.get("fallback", 0.0) + before + share
    return kept, kept_seen
