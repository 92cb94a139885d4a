"""Running the pipeline over a dataset: ``extract`` (contours for OPC) and ``evaluate`` (Table I).

A bad image or target never stops a batch: it is recorded with its message. Files are
written atomically, and ``extract`` resumes after an interruption.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import PipelineConfig
from .contours import extract_contours, write_contours_csv, write_contours_gds, write_contours_json
from .dataset import Dataset, Target, atomic_write, write_image
from .engine import Engine, ModelRef, open_dataset, resolve_model
from .errors import SegSEMError
from .metrics import average_exposure, edge_placement_error, mask_scores
from .metrology import measure_feature, measure_field
from .overlay import SOURCE_COLOURS, overlay_image
from .pipeline import MaskSource, SegmentationResult, check_image, segment_image
from .registry import TRADITIONAL

__all__ = [
    "RECORD_FIELDS", "IMAGE_FIELDS", "GAUGE_FIELDS", "extract_dataset", "EvaluationReport", "evaluate_dataset", "METRICS", "format_table", "calibration"]

RECORD_FIELDS = ["stem", "label", "prompt_x", "prompt_y", "touches_border", "source", "gate_reasons", "score",
                 "n_candidates", "kind", "tone", "centroid_x", "centroid_y", "area_nm2", "cd_nm", "cd_px",
                 "cd_3sigma_nm", "ellipticity", "pixel_size_nm", "design_match", "align_dx_nm", "align_dy_nm",
                 "align_score", "align_sigma_nm", "gauges", "epe_mean_nm", "epe_bias_nm", "epe_3sigma_nm",
                 "epe_max_nm", "scan_tail_px", "ms_encode", "ms_predict", "ms_gate", "ms_fallback", "ms_refine",
                 "ms_contours", "ms_total", "status", "message"]

#: Columns of ``images.csv``: one row per image of an ``extract`` run.
IMAGE_FIELDS = ["stem", "file", "width", "height", "pixel_size_nm", "pixel_size_source", "field_x0", "field_y0",
                "field_x1", "field_y1", "data_bar_row", "targets", "ok", "flagged", "errors", "kind", "counts",
                "cd_median_nm", "cd_mean_nm", "cd_3sigma_nm", "pitch_nm", "ler_3sigma_nm", "ler_unbiased_3sigma_nm",
                "lwr_3sigma_nm", "lwr_unbiased_3sigma_nm", "layout_x_nm", "layout_y_nm", "rotation_deg",
                "align_dx_nm", "align_dy_nm", "align_score", "align_sigma_nm", "align_ambiguity", "align_status",
                "site_x_nm", "site_y_nm", "design_features", "not_printed", "not_in_design", "gauges", "epe_mean_nm",
                "epe_bias_nm", "epe_3sigma_nm", "epe_max_nm", "ref_dx_px", "ref_dy_px", "ref_dx_nm", "ref_dy_nm",
                "ref_score", "ref_status", "status", "message"]

#: Columns of ``gauges.csv``: one row per gauge (edge gauges on the design, or cutlines from a gauge file).
GAUGE_FIELDS = ["stem", "label", "gauge", "type", "x_nm", "y_nm", "nx", "ny", "x2_nm", "y2_nm", "epe_nm", "cd_nm",
                "cd_design_nm"]

#: Per-target metrics of the evaluation, in Table I's order (EPE mean in px last).
METRICS = ("iou", "precision", "recall", "f1", "epe_px")
#: The three columns of Table I: the paper's standard pipeline, the same with this project's edge placement (the
#: best classical path), and SegSEM.
PIPELINES = ("standard", "standard_ep", "segsem")
#: How Table I names them.
PIPELINE_NAMES = {"standard": "standard", "standard_ep": "standard + edge placement", "segsem": "SegSEM"}


def _label_key(label: Any) -> str:
    return "p" if label is None or label == "" else str(label)


@dataclass(frozen=True)
class _Loaded:
    """One image ready for the pipeline: pixels, truth, targets, pixel size and field."""

    image: np.ndarray
    mask: np.ndarray | None
    targets: list
    pixel_size_nm: float | None
    pixel_size_source: str
    field: tuple[int, int, int, int]
    placement: Any = None
    reference: Any = None


_REFERENCES: dict = {}


def _reference_image(path: Path) -> np.ndarray:
    key = str(Path(path).resolve())
    if key not in _REFERENCES:
        from .instrument import read_sem

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _REFERENCES[key] = check_image(read_sem(path).image, where=str(path))
    return _REFERENCES[key]


def _load(ds: Dataset, stem: str) -> _Loaded:
    """Read one image, place it on its layout when there is one, and its targets (the design's polygons, or
    discovered when nothing names them); raises SegSEMError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sem = ds.load_sem(stem)
    image = check_image(sem.image, where=str(ds.images[stem]))
    mask = ds.load_mask(stem)
    if mask is not None and mask.shape != image.shape:
        raise SegSEMError(f"{ds.masks[stem]}: mask shape {mask.shape[1]}x{mask.shape[0]} differs from its "
                          f"image {image.shape[1]}x{image.shape[0]}")
    ps, source = ds.pixel_size(stem, sem)
    field = ds.field(stem, image)
    placement = ds.place(stem, image, ps, field)
    reference = None
    if ds.reference is not None:
        from .layout import register_images

        ref = _reference_image(ds.reference)
        if ref.shape != image.shape:
            raise SegSEMError(f"{ds.images[stem]}: {image.shape[1]}x{image.shape[0]} px, the reference "
                              f"{ds.reference} {ref.shape[1]}x{ref.shape[0]} px; expected the same size")
        # without a pixel size the search runs in px at the default 1 nm/px (nm columns then read as px)
        reference = register_images(image, ref, pixel_size_nm=ps or 1.0, search_nm=ds.search_nm)
    targets = ds.targets(stem, mask=mask, shape=image.shape, image=image if mask is None else None, pixel_size_nm=ps,
                         placement=placement)
    return _Loaded(image, mask, targets, ps, source, field, placement, reference)


def _iter_images(ds: Dataset, stems: Iterable[str]):
    """Yield (stem, image, mask, targets, error) for each image; errors instead of raising."""
    for stem in stems:
        try:
            got = _load(ds, stem)
            yield stem, got.image, got.mask, got.targets, None
        except SegSEMError as exc:
            yield stem, None, None, [], exc


def _record(stem: str, target: Target | None, res: SegmentationResult | SegSEMError | None) -> dict:
    row = {k: "" for k in RECORD_FIELDS}
    row["stem"] = stem
    if target is not None:
        row.update(label=_label_key(target.label), prompt_x=f"{target.prompt_xy[0]:.2f}",
                   prompt_y=f"{target.prompt_xy[1]:.2f}", touches_border=int(target.touches_border))
    if isinstance(res, SegmentationResult):
        chosen = res.decision.accepted_index if res.decision is not None and res.decision.accepted else None
        score = res.candidate_scores[chosen] if chosen is not None else (max(res.candidate_scores) if res.candidate_scores else "")
        row.update(source=res.source, gate_reasons=res.gate_reasons, score=f"{score:.4f}" if score != "" else "",
                   n_candidates=len(res.candidate_scores), status="flagged" if res.flag else "ok", message=res.flag,
                   scan_tail_px=f"{res.scan_tail_px:g}")
        for stage in ("encode", "predict", "gate", "fallback", "refine", "contours"):
            row[f"ms_{stage}"] = f"{res.timings_ms.get(stage, 0.0):.2f}"
        row["ms_total"] = f"{res.total_ms:.2f}"
    else:
        row.update(status="error", message=str(res))
    return row


def _box(res: SegmentationResult, shape: tuple[int, int], margin: int = 16) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around a result's contours with a margin, clipped to the image."""
    pts = np.vstack([c for c in res.contours if len(c)])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + margin + 1
    return max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)


def _write_target_files(out: Path, image: np.ndarray, res: SegmentationResult, target: Target) -> None:
    key = _label_key(res.label)
    folder = out / res.stem
    write_image(folder / f"{key}.mask.png", res.mask)  # a 1-bit PNG, read back as 0/255
    write_contours_json(folder / f"{key}.contours.json", {key: res.contours}, stem=res.stem,
                        pixel_size_nm=res.pixel_size_nm,
                        extra={key: {"source": res.source, "gate": res.gate_reasons,
                                     "prompt_xy": list(res.prompt_xy), "candidate_scores": res.candidate_scores,
                                     "touches_border": bool(target.touches_border)}})
    write_contours_gds(folder / f"{key}.gds", {key: res.contours}, stem=res.stem, pixel_size_nm=res.pixel_size_nm,
                       image_height_px=image.shape[0])
    # the target's own overlay is a close-up of it (the image's overlay shows them all)
    x0, y0, x1, y1 = _box(res, image.shape)
    offset = np.array([x0, y0], float)
    write_image(folder / f"{key}.overlay.png",
                overlay_image(image[y0:y1, x0:x1], [c - offset for c in res.contours],
                              prompt_xy=tuple(np.asarray(res.prompt_xy) - offset), colour=SOURCE_COLOURS[res.source],
                              scale=2 if max(x1 - x0, y1 - y0) < 256 else 1))


def _rasterise(contours: list, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside the outer contour and outside the inner ones."""
    from skimage.draw import polygon as draw_polygon

    mask = np.zeros(shape, bool)
    for i, c in enumerate(contours):
        c = np.asarray(c)
        if len(c) < 3:
            continue
        rr, cc = draw_polygon(c[:, 1], c[:, 0], shape)  # only the polygon's box is visited
        mask[rr, cc] = i == 0
    return mask


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _write_image_files(out: Path, stem: str, image: np.ndarray, pixel_size_nm: float) -> tuple[dict, Any]:
    """Per-image JSON, CSV, GDS and overlay of every finished target of ``stem`` (read back from its files, so a
    resumed run includes the earlier targets), and the metrology of each target and of the field.

    Returns ({label key: record columns of its metrology}, FieldMetrics or None, {label key: contours px}).
    """
    folder = out / stem
    contours: dict[str, list] = {}
    sources: dict[str, str] = {}
    border: dict[str, bool] = {}
    for f in sorted(folder.glob("*.contours.json")):
        if f.name == f"{stem}.contours.json":
            continue
        doc = json.loads(f.read_text())
        for key, feat in doc["features"].items():
            contours[key] = [np.asarray(c) for c in feat["contours_px"]]
            sources[key] = feat.get("source", "standard")
            border[key] = bool(feat.get("touches_border", False))
    if not contours:
        return {}, None, {}
    ps = float(pixel_size_nm)
    write_contours_json(folder / f"{stem}.contours.json", contours, stem=stem, pixel_size_nm=ps)
    write_contours_csv(folder / f"{stem}.contours.csv", contours, stem=stem, pixel_size_nm=ps)
    write_contours_gds(folder / f"{stem}.gds", contours, stem=stem, pixel_size_nm=ps, image_height_px=image.shape[0])
    rgb = overlay_image(image, [])
    for source in sorted(set(sources.values())):
        rgb = overlay_image(rgb, [c for key, cs in contours.items() if sources[key] == source for c in cs],
                            colour=SOURCE_COLOURS.get(source, SOURCE_COLOURS["standard"]))
    write_image(folder / f"{stem}.overlay.png", rgb)
    columns: dict[str, dict] = {}
    measured, touches = [], []
    for key, cs in contours.items():
        try:
            m = measure_feature(image, _rasterise(cs, image.shape), cs, pixel_size_nm=ps, touches_border=border[key])
        except SegSEMError:
            continue
        measured.append(m)
        touches.append(border[key])
        columns[key] = {"kind": m.kind, "tone": m.tone, "centroid_x": _fmt(m.centroid_xy[0], 2),
                        "centroid_y": _fmt(m.centroid_xy[1], 2), "area_nm2": _fmt(m.area_nm2, 2),
                        "cd_nm": _fmt(m.cd_nm), "cd_px": _fmt(m.cd_px), "cd_3sigma_nm": _fmt(m.cd_3sigma_nm),
                        "ellipticity": _fmt(m.ellipticity), "pixel_size_nm": _fmt(ps, 6)}
    metrics = measure_field(measured, pixel_size_nm=ps, touches_border=touches)
    if metrics.roughness is not None:
        r = metrics.roughness

        def _psd(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["frequency_per_nm", "psd_ler_nm3", "psd_lwr_nm3", "floor_ler_nm3", "floor_lwr_nm3",
                            "n_edges", "length"])
                for f, a, b in zip(r.frequency_per_nm, r.psd_ler, r.psd_lwr):
                    w.writerow([f"{f:.6g}", f"{a:.6g}", f"{b:.6g}", f"{r.floor_ler:.6g}", f"{r.floor_lwr:.6g}",
                                r.n_edges, r.length])

        atomic_write(folder / f"{stem}.psd.csv", _psd)
    return columns, metrics, contours


def _layout_measure(out: Path, stem: str, got: _Loaded, contours: dict, gauge_step_nm: float,
                    cutlines: np.ndarray | None) -> tuple[dict, dict]:
    """Gauges, EPE and design match of one placed image; writes ``<stem>.gauges.csv`` and ``<stem>.unmatched.csv``.

    Returns ({label key: record columns}, images.csv columns).
    """
    from scipy import ndimage as ndi

    from .discover import discover_features
    from .layout import cutline_cd, edge_gauges, epe_summary, gauge_epe, rasterize_polygons

    pl = got.placement
    site, ps = pl.site, pl.site.pixel_size_nm
    fx0, fy0, fx1, fy1 = got.field
    a = pl.alignment
    align_cols = {"align_dx_nm": _fmt(a.dx_nm), "align_dy_nm": _fmt(a.dy_nm), "align_score": _fmt(a.score),
                  "align_sigma_nm": _fmt(a.sigma_px * ps)}

    def unmatched_row(kind: str, label: str, x: float, y: float) -> dict:
        (lx, ly), = site.to_layout([[x, y]])
        return {"stem": stem, "kind": kind, "label": label, "x_px": f"{x:.2f}", "y_px": f"{y:.2f}",
                "x_nm": f"{lx:.2f}", "y_nm": f"{ly:.2f}"}

    def in_field(xy_px: np.ndarray) -> np.ndarray:
        return (xy_px[:, 0] >= fx0) & (xy_px[:, 0] <= fx1 - 1) & (xy_px[:, 1] >= fy0) & (xy_px[:, 1] <= fy1 - 1)

    gauge_rows, all_epe, columns, unmatched = [], [], {}, []
    target_keys = {_label_key(t.label) for t in got.targets}
    grow = max(2.0, 10.0 / ps)
    for t in got.targets:
        key = _label_key(t.label)
        poly = pl.polygons.get(t.label)
        cs = contours.get(key)
        col = dict(align_cols)
        printed = False
        if cs:
            mask = _rasterise(cs, got.image.shape)
            # the design's pixels on its box, widened by the dilation (not on the whole image: many targets)
            g = int(np.ceil(grow))
            pts = np.vstack(t.design.polygons)
            bx0, by0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - g - 1, 0)
            bx1, by1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + g + 2, got.image.shape[::-1])
            region = rasterize_polygons(list(t.design.polygons), (by1 - by0, bx1 - bx0), origin=(bx0, by0)) >= 0.5
            near = ndi.binary_dilation(region, iterations=g)
            crop = mask[by0:by1, bx0:bx1]
            printed = bool(mask.any() and (crop & near).sum() >= 0.5 * mask.sum()
                           and (crop & region).sum() >= 0.1 * region.sum())
        col["design_match"] = "printed" if printed else "not printed"
        if not printed:
            unmatched.append(unmatched_row("not printed", key, *t.prompt_xy))
        if poly is not None and cs:
            pts, nrm = edge_gauges(poly, gauge_step_nm)
            keep = in_field(site.to_pixels(pts)) if len(pts) else np.zeros(0, bool)
            pts, nrm = pts[keep], nrm[keep]
            short = float(min(np.ptp(poly[:, 0]), np.ptp(poly[:, 1])))
            epe = gauge_epe(pts, nrm, [site.to_layout(c) for c in cs], search_nm=float(np.clip(0.5 * short, 20, 100)))
            for g, ((x, y), (nx, ny), e) in enumerate(zip(pts, nrm, epe)):
                gauge_rows.append({"stem": stem, "label": key, "gauge": f"{key}.{g}", "type": "edge", "x_nm": f"{x:.3f}",
                                   "y_nm": f"{y:.3f}", "nx": f"{nx:.4f}", "ny": f"{ny:.4f}", "epe_nm": _fmt(e)})
            summary = epe_summary(epe)
            all_epe.append(epe)
            col.update(gauges=summary["gauges"], **{k: _fmt(summary[k]) for k in
                                                    ("epe_mean_nm", "epe_bias_nm", "epe_3sigma_nm", "epe_max_nm")})
        columns[key] = col
    if cutlines is not None and len(cutlines):
        ends = np.vstack([site.to_pixels(cutlines[:, :2]), site.to_pixels(cutlines[:, 2:])])
        n = len(cutlines)
        inside = in_field(ends[:n]) & in_field(ends[n:])
        chosen = cutlines[inside]
        if len(chosen):
            all_nm = [site.to_layout(c) for key, cs in contours.items() if key in target_keys for c in cs]
            cd = cutline_cd(chosen, all_nm)
            cd_design = cutline_cd(chosen, list(pl.polygons.values()))
            for c, (x1, y1, x2, y2), d, d0 in zip(np.nonzero(inside)[0], chosen, cd, cd_design):
                gauge_rows.append({"stem": stem, "label": "", "gauge": f"cut{c + 1}", "type": "cutline",
                                   "x_nm": f"{x1:.3f}", "y_nm": f"{y1:.3f}", "x2_nm": f"{x2:.3f}", "y2_nm": f"{y2:.3f}",
                                   "cd_nm": _fmt(d), "cd_design_nm": _fmt(d0)})
    # features the image shows that the design does not have
    designed = rasterize_polygons(list(pl.polygons_px().values()), got.image.shape) >= 0.5
    designed = ndi.binary_dilation(designed, iterations=int(np.ceil(grow)))
    found = discover_features(got.image[fy0:fy1, fx0:fx1]).features
    extra = 0
    for f in found:
        x, y = f.prompt_xy[0] + fx0, f.prompt_xy[1] + fy0
        if not designed[int(round(y)), int(round(x))]:
            extra += 1
            unmatched.append(unmatched_row("not in design", "", x, y))
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{stem}.gauges.csv", lambda tmp: _write_rows(tmp, gauge_rows, GAUGE_FIELDS))
    atomic_write(folder / f"{stem}.unmatched.csv",
                 lambda tmp: _write_rows(tmp, unmatched, ["stem", "kind", "label", "x_px", "y_px", "x_nm", "y_nm"]))
    summary = epe_summary(np.concatenate(all_epe) if all_epe else np.zeros(0))
    image_cols = {"layout_x_nm": _fmt(pl.nominal.center_nm[0]), "layout_y_nm": _fmt(pl.nominal.center_nm[1]),
                  "rotation_deg": _fmt(pl.nominal.rotation_deg), **align_cols, "align_ambiguity": _fmt(a.ambiguity),
                  "align_status": "ok" if a.ok else f"flagged: {a.message} (nominal site kept)",
                  "site_x_nm": _fmt(site.center_nm[0]), "site_y_nm": _fmt(site.center_nm[1]),
                  "design_features": len(got.targets),
                  "not_printed": sum(u["kind"] == "not printed" for u in unmatched), "not_in_design": extra,
                  "gauges": summary["gauges"],
                  **{k: _fmt(summary[k]) for k in ("epe_mean_nm", "epe_bias_nm", "epe_3sigma_nm", "epe_max_nm")}}
    return columns, image_cols


def _image_row(ds: Dataset, stem: str, got: _Loaded | None, records: list[dict], metrics: Any,
               error: SegSEMError | None, default_ps: float) -> dict:
    row = {k: "" for k in IMAGE_FIELDS}
    row.update(stem=stem, file=str(ds.images.get(stem, "")))
    if got is None:
        row.update(status="error", message=str(error), errors=1)
        return row
    rows, cols = got.image.shape
    x0, y0, x1, y1 = got.field
    ps = got.pixel_size_nm
    row.update(width=cols, height=rows, pixel_size_nm=_fmt(ps if ps else default_ps, 6),
               pixel_size_source=got.pixel_size_source if ps else f"default {default_ps:g} nm (none in meta.csv, "
               f"--pixel-size or the file)", field_x0=x0, field_y0=y0, field_x1=x1, field_y1=y1,
               data_bar_row=y1 if y1 < rows and ds.crop is None else "", targets=len(records),
               ok=sum(r["status"] == "ok" for r in records), flagged=sum(r["status"] == "flagged" for r in records),
               errors=sum(r["status"] == "error" for r in records), status="ok")
    if not got.targets:
        row.update(status="error", message="no targets: nothing stands out of the noise in the field")
    if metrics is not None:
        r = metrics.roughness
        row.update(kind=metrics.kind or "", counts=" ".join(f"{k}:{v}" for k, v in sorted(metrics.counts.items())),
                   cd_median_nm=_fmt(metrics.cd_median_nm), cd_mean_nm=_fmt(metrics.cd_mean_nm), cd_3sigma_nm=_fmt(metrics.cd_3sigma_nm),
                   pitch_nm=_fmt(metrics.pitch_nm, 4))
        if r is not None:
            row.update(ler_3sigma_nm=_fmt(r.ler_3sigma_nm), ler_unbiased_3sigma_nm=_fmt(r.ler_unbiased_3sigma_nm),
                       lwr_3sigma_nm=_fmt(r.lwr_3sigma_nm), lwr_unbiased_3sigma_nm=_fmt(r.lwr_unbiased_3sigma_nm))
    return row


def _extract_image(ds: Dataset, model: Any, config: PipelineConfig, out: Path, layout_options: dict, index: int,
                   stem: str, done: frozenset) -> tuple[int, list[dict], dict | None]:
    """One image of ``extract``: segment its unfinished targets, write their files and the image's, measure;
    return its new records and its images.csv row (None when every target was already done)."""
    ds, model = open_dataset(ds), resolve_model(model)
    try:
        got = _load(ds, stem)
    except SegSEMError as exc:
        return index, [_record(stem, None, exc)], _image_row(ds, stem, None, [], None, exc, config.pixel_size_nm)
    todo = [t for t in got.targets if _label_key(t.label) not in done]
    if not todo and got.targets:
        return index, [], None
    new = []
    for t, res in zip(todo, segment_image(got.image, todo, model=model, config=config, field=got.field)):
        if isinstance(res, SegmentationResult):
            try:
                _write_target_files(out, got.image, res, t)
            except OSError as exc:
                res = SegSEMError(f"{out / stem}: could not write results ({exc})")
        new.append(_record(stem, t, res))
    columns, metrics, contours = _write_image_files(out, stem, got.image, got.pixel_size_nm or config.pixel_size_nm)
    for r in new:
        r.update(columns.get(r["label"], {}))
    image_row = _image_row(ds, stem, got, new, metrics, None, config.pixel_size_nm)
    if got.placement is not None:
        by_target, image_cols = _layout_measure(out, stem, got, contours, layout_options.get("gauge_step_nm", 10.0),
                                                layout_options.get("cutlines"))
        for r in new:
            r.update(by_target.get(r["label"], {}))
        image_row.update(image_cols)
    if got.reference is not None:
        a = got.reference
        image_row.update(ref_dx_px=_fmt(a.dx_px), ref_dy_px=_fmt(a.dy_px), ref_dx_nm=_fmt(a.dx_nm),
                         ref_dy_nm=_fmt(a.dy_nm), ref_score=_fmt(a.score),
                         ref_status="ok" if a.ok else f"flagged: {a.message}")
    return index, new, image_row


def extract_dataset(
    dataset: str | Path | Dataset,
    out: str | Path,
    *,
    model: MaskSource | ModelRef | None = None,
    config: PipelineConfig = PipelineConfig(),
    resume: bool = False,
    stems: list[str] | None = None,
    progress: bool = True,
    engine: Engine = Engine(),
    gauge_step_nm: float = 10.0,
    gauges: str | Path | None = None,
    export_layer: tuple[int, int] = (100, 0),
) -> list[dict]:
    """Extract contours for every target of a dataset.

    Writes, per target, ``OUT/<stem>/<label>.mask.png``, ``.contours.json``, ``.gds`` and
    ``.overlay.png`` (a close-up); per image ``OUT/<stem>/<stem>.contours.json|.csv``,
    ``<stem>.gds`` (one polygon per feature, in nm), ``<stem>.overlay.png`` and, for lines,
    ``<stem>.psd.csv`` (the roughness PSDs); one row per target in ``OUT/records.csv``,
    with its metrology (kind, tone, centroid, area, CD); and one row per image in
    ``OUT/images.csv`` (pixel size and its source, field and data bar, counts, CD mean and
    3-sigma, pitch, LER and LWR as measured and unbiased).

    Where nothing names the targets (no masks, prompts.csv, meta prompt or layout),
    every feature of the field is discovered. The data bar is left out of everything.

    With a layout (the dataset's ``layout=``, or per-image ``layout/<stem>.gds|.oas``
    clips) each image is aligned to its design (``align_*`` columns; a flagged alignment
    keeps the nominal site), every design polygon in the field is a target, gauges on
    the design edges every ``gauge_step_nm`` (and the cutlines of ``gauges``) give EPE
    and CD (``<stem>.gauges.csv``, all together in ``OUT/gauges.csv``; ``epe_*``
    columns), designed features that did not print and printed ones the design lacks go
    to ``<stem>.unmatched.csv``, and the contours in layout coordinates go to
    ``OUT/contours_layout.gds`` and ``.oas`` (one cell per image at its aligned site,
    contours on ``export_layer``, gauges on the layer after it).

    Parameters
    ----------
    dataset : path or Dataset
    out : path
    model : MaskSource or ModelRef, optional
        None runs the standard pipeline. On a Dask engine give a :class:`ModelRef`: each
        worker loads it once.
    config : PipelineConfig
    resume : bool
        Keep finished targets of an earlier run (rows with status ``ok`` or ``flagged``),
        whatever engine ran it, and do the rest.
    stems : list of str, optional
        Only these images.
    progress : bool
        Show a progress bar (and the Dask dashboard's address).
    engine : Engine
        In-process (the default), a local Dask cluster or an existing one.
    gauge_step_nm : float
        Spacing of the edge gauges along the design's edges (layout runs only).
    gauges : path, optional
        Cutline gauges, CSV ``x1,y1,x2,y2`` in layout nm.
    export_layer : (int, int)
        Layer and datatype of the exported contours.

    Returns
    -------
    list of dict
        The rows of ``records.csv``: images in the dataset's order, targets in each
        image's order, whatever the engine.

    Notes
    -----
    Records stream into ``records.csv`` as images finish (an interrupted run keeps them);
    at the end the file is rewritten in the stable order.
    """
    from .layout import read_cutlines

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not gauge_step_nm > 0:
        raise SegSEMError(f"gauge step {gauge_step_nm!r}: expected a positive number of nm")
    layout_options = {"gauge_step_nm": float(gauge_step_nm), "cutlines": read_cutlines(gauges) if gauges else None}
    shared_ds, shared_model = _portable(ds, model, engine)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.csv"
    images_path = out / "images.csv"
    done: dict[tuple[str, str], dict] = {}
    image_rows: dict[str, dict] = {}
    if resume and images_path.exists():
        with open(images_path, newline="") as fh:
            image_rows = {row["stem"]: row for row in csv.DictReader(fh)}
    if resume and records_path.exists():
        with open(records_path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("status") in ("ok", "flagged"):
                    done[(row["stem"], row["label"])] = row
    stems = stems if stems is not None else ds.stems
    order = {stem: i for i, stem in enumerate(stems)}
    per_image: dict[int, list[dict]] = {}
    done_by_stem: dict[str, set] = {}
    for (stem, label), row in done.items():
        per_image.setdefault(order.get(stem, len(order)), []).append(row)
        done_by_stem.setdefault(stem, set()).add(label)
    atomic_write(records_path, lambda tmp: _write_rows(tmp, [r for i in sorted(per_image) for r in per_image[i]]))
    jobs = [(i, stem, frozenset(done_by_stem.get(stem, ()))) for i, stem in enumerate(stems)]
    with open(records_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RECORD_FIELDS)
        for index, new, image_row in engine.map(_extract_image, jobs, shared=(shared_ds, shared_model, config, out,
                                                        layout_options),
                                                progress=progress, desc="extract"):
            writer.writerows(new)
            fh.flush()
            per_image.setdefault(index, []).extend(new)
            if image_row is not None:
                image_rows[stems[index]] = image_row
    rows = [r for i in sorted(per_image) for r in per_image[i]]
    atomic_write(records_path, lambda tmp: _write_rows(tmp, rows))
    atomic_write(images_path, lambda tmp: _write_rows(tmp, [image_rows[s] for s in stems if s in image_rows],
                                                      IMAGE_FIELDS))
    placed = [image_rows[s] for s in stems if s in image_rows and image_rows[s].get("site_x_nm")]
    if placed:
        _write_layout_outputs(out, placed, export_layer)
    return rows


def _write_layout_outputs(out: Path, placed: list[dict], layer: tuple[int, int]) -> None:
    """``gauges.csv`` from the images' gauge files and the contours in layout coordinates (GDS and OASIS)."""
    from .layout import Site, write_layout_contours

    gauge_rows, sites, contours_nm, gauge_marks = [], {}, {}, {}
    for row in placed:
        stem = row["stem"]
        site = Site((float(row["site_x_nm"]), float(row["site_y_nm"])), float(row["pixel_size_nm"]),
                    (int(row["height"]), int(row["width"])), float(row["rotation_deg"] or 0.0))
        sites[stem] = site
        path = out / stem / f"{stem}.contours.json"
        if path.exists():
            doc = json.loads(path.read_text())
            contours_nm[stem] = {k: [site.to_layout(np.asarray(c)) for c in f["contours_px"]]
                                 for k, f in doc["features"].items()}
        gpath = out / stem / f"{stem}.gauges.csv"
        if gpath.exists():
            with open(gpath, newline="") as fh:
                rows = list(csv.DictReader(fh))
            gauge_rows.extend(rows)
            gauge_marks[stem] = [(float(g["x_nm"]), float(g["y_nm"]), float(g["nx"]), float(g["ny"]),
                                  float(g["epe_nm"]) if g["epe_nm"] else float("nan"), g["gauge"])
                                 for g in rows if g["type"] == "edge"]
    atomic_write(out / "gauges.csv", lambda tmp: _write_rows(tmp, gauge_rows, GAUGE_FIELDS))
    for suffix in (".gds", ".oas"):
        write_layout_contours(out / f"contours_layout{suffix}", sites, contours_nm, layer=layer, gauges=gauge_marks,
                              gauge_layer=(layer[0] + 1, layer[1]))


def _write_rows(path: Path, rows: list[dict], fields: list[str] = RECORD_FIELDS) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)


@dataclass
class EvaluationReport:
    """The paper's Table I, recomputed.

    Attributes
    ----------
    per_sample : pandas.DataFrame
        One row per target: scores of the standard and SegSEM pipelines.
    per_case : pandas.DataFrame
        One row per exposure case: means and standard deviations, time, fallback count.
    summary : dict
        Overall means, fallback rate, time per image, relative improvement.
    """

    per_sample: Any
    per_case: Any
    summary: dict

    def write(self, out: str | Path) -> Path:
        """Write ``per_sample.csv``, ``per_case.csv`` and ``summary.json`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "per_sample.csv", lambda tmp: self.per_sample.to_csv(tmp, index=False))
        atomic_write(out / "per_case.csv", lambda tmp: self.per_case.to_csv(tmp, index=False))
        atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(self.summary, indent=2)))
        return out


def _scores(res: SegmentationResult | SegSEMError, truth: np.ndarray, truth_contours: list, ps: float | None) -> dict:
    if not isinstance(res, SegmentationResult):
        return {"iou": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "epe_px": np.nan, "epe_p95_px": np.nan,
                "epe_max_px": np.nan, "epe_nm": np.nan, "source": "error", "error": str(res)}
    s = mask_scores(res.mask, truth)
    e = edge_placement_error(res.contours, truth_contours, pixel_size_nm=ps)
    return {"iou": s.iou, "precision": s.precision, "recall": s.recall, "f1": s.f1, "epe_px": e.mean_px,
            "epe_p95_px": e.p95_px, "epe_max_px": e.max_px, "epe_nm": e.mean_nm if ps else np.nan,
            "source": res.source, "error": ""}


def _evaluate_image(ds: Dataset, model: Any, config: PipelineConfig, index: int, stem: str) -> tuple:
    """One image of ``evaluate``: (index, per-target rows, timing rows, image error or None)."""
    ds, model = open_dataset(ds), resolve_model(model)
    rows, image_rows = [], []
    for stem, image, mask, targets, error in _iter_images(ds, [stem]):
        if error is not None:
            return index, [], [], {"stem": stem, "error": str(error)}
        if not targets:
            return index, [], [], None
        exposure = average_exposure(image)
        timed = {}
        placed = replace(config, edge=replace(config.edge, enabled=True, standard=True))
        for name, m, c in (("standard", None, config), ("standard_ep", None, placed), ("segsem", model, config)):
            t0 = time.perf_counter()
            timed[name] = segment_image(image, targets, model=m, config=c, keep_candidates=m is not None)
            image_rows.append({"stem": stem, "pipeline": name, "ms": (time.perf_counter() - t0) * 1e3})
        for i, t in enumerate(targets):
            truth = mask == t.label
            truth_contours = extract_contours(truth)
            row = {"stem": stem, "label": t.label, "exposure_case": t.exposure_case or "-",
                   "average_exposure": exposure, "split": t.split or "", "touches_border": t.touches_border}
            for name in PIPELINES:
                res = timed[name][i]
                for k, v in _scores(res, truth, truth_contours, t.pixel_size_nm).items():
                    row[f"{name}_{k}"] = v
                if name == "segsem" and isinstance(res, SegmentationResult):
                    row["segsem_gate"] = res.gate_reasons
                    row["segsem_score"] = max(res.candidate_scores) if res.candidate_scores else np.nan
                    if res.candidates is not None and len(res.candidates):
                        top = res.candidates[int(np.argmax(res.candidate_scores))]
                        row["segsem_score_true_iou"] = mask_scores(top, truth).iou
                        res.candidates = None  # the masks are not kept past their image
            rows.append(row)
    return index, rows, image_rows, None


def _portable(ds: Dataset, model: Any, engine: Engine) -> tuple[Dataset | str, Any]:
    """What goes to the workers: on Dask the dataset's path (each worker opens it once) and the model by name;
    in-process both as they are."""
    if not engine.distributed:
        return ds, model
    if model is not None and not isinstance(model, ModelRef):
        raise SegSEMError("a Dask engine takes the model by name (ModelRef), not a loaded model object")
    return ds.spec(), model


def _has_model(model: Any) -> bool:
    return model.spec != TRADITIONAL if isinstance(model, ModelRef) else model is not None


def evaluate_dataset(
    dataset: str | Path | Dataset,
    *,
    model: MaskSource | ModelRef | None = None,
    config: PipelineConfig = PipelineConfig(),
    stems: list[str] | None = None,
    split: str | None = None,
    progress: bool = True,
    engine: Engine = Engine(),
) -> EvaluationReport:
    """Run the standard and the SegSEM pipelines on every target with ground truth.

    Parameters
    ----------
    dataset : path or Dataset
    model : MaskSource or ModelRef, optional
        The SegSEM column's model; None makes both columns the standard pipeline. On a
        Dask engine give a :class:`ModelRef`.
    config : PipelineConfig
    stems : list of str, optional
        Only these images.
    split : str, optional
        Only this split (``train``, ``val`` or ``test``).
    progress : bool
    engine : Engine
        In-process (the default), a local Dask cluster or an existing one; the report is
        the same, timing aside.

    Returns
    -------
    EvaluationReport

    Notes
    -----
    A target whose segmentation raised counts as a miss (IoU, precision, recall and F1 of
    0; no EPE) and is named in ``per_sample``'s ``error`` columns. Time per image is the
    wall-clock time of :func:`segsem_lite.pipeline.segment_image` on all its targets.
    """
    import pandas as pd

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not ds.has_masks:
        raise SegSEMError(f"{ds.root}: evaluation needs ground truth, but there is no masks/ folder")
    shared_ds, shared_model = _portable(ds, model, engine)
    if stems is None:
        stems = ds.split(split) if split else ds.stems
    results = {}
    for index, rows_i, image_rows_i, error in engine.map(_evaluate_image, list(enumerate(stems)),
                                                         shared=(shared_ds, shared_model, config),
                                                         progress=progress, desc="evaluate"):
        results[index] = (rows_i, image_rows_i, error)
    rows, image_rows, image_errors = [], [], []
    for index in sorted(results):
        rows_i, image_rows_i, error = results[index]
        rows.extend(rows_i)
        image_rows.extend(image_rows_i)
        if error is not None:
            image_errors.append(error)
    per_sample = pd.DataFrame(rows)
    if per_sample.empty:
        raise SegSEMError(f"{ds.root}: no targets with ground truth to evaluate"
                          + (f" ({len(image_errors)} images failed: {image_errors[0]['error']})" if image_errors else ""))
    times = pd.DataFrame(image_rows)
    times = times.merge(per_sample[["stem", "exposure_case"]].drop_duplicates("stem"), on="stem")
    has_model = _has_model(model)
    per_case = _per_case(per_sample, times, has_model)
    summary = _summary(per_sample, times, model, image_errors, has_model)
    return EvaluationReport(per_sample=per_sample, per_case=per_case, summary=summary)


def calibration(predicted, true, *, bins=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)) -> dict:
    """How well the gate's predicted IoU matches the true IoU of the same candidate.

    Parameters
    ----------
    predicted, true : sequences of float
        Predicted IoU of each target's highest-scoring candidate, and that candidate's
        IoU against the ground truth (before refinement).
    bins : sequence of float
        Edges of the reliability table's predicted-IoU bins.

    Returns
    -------
    dict
        ``n``, ``mean_predicted``, ``mean_true``, ``mean_abs_error``, ``correlation`` and
        ``bins``: per bin of predicted IoU, its count and mean predicted and true IoU.
    """
    p = np.asarray(predicted, float)
    t = np.asarray(true, float)
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    out: dict[str, Any] = {"n": int(len(p))}
    if not len(p):
        return out
    out.update(mean_predicted=float(p.mean()), mean_true=float(t.mean()), mean_abs_error=float(np.abs(p - t).mean()),
               correlation=float(np.corrcoef(p, t)[0, 1]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else None)
    table = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (p >= lo) & (p < hi)
        if sel.any():
            table.append({"from": float(lo), "to": float(min(hi, 1.0)), "n": int(sel.sum()),
                          "predicted": float(p[sel].mean()), "true": float(t[sel].mean())})
    out["bins"] = table
    return out


def _case_sort_key(values):
    return [(0, int(v)) if str(v).isdigit() else (1, str(v)) for v in values]


def _per_case(per_sample, times, has_model: bool):
    import pandas as pd

    out = []
    for case, g in per_sample.groupby("exposure_case", sort=False):
        row = {"exposure_case": case, "average_exposure": g.drop_duplicates("stem")["average_exposure"].mean(),
               "n": len(g)}
        for m in METRICS:
            for name in PIPELINES:
                row[f"{m}_{name}_mean"] = g[f"{name}_{m}"].mean()
                row[f"{m}_{name}_std"] = g[f"{name}_{m}"].std(ddof=0)
        tc = times[times["exposure_case"] == case]
        for name in PIPELINES:
            row[f"ms_per_image_{name}"] = tc.loc[tc["pipeline"] == name, "ms"].mean()
        row["fallback_count"] = int((g["segsem_source"] == "fallback").sum()) if has_model else 0
        row["errors"] = int((g["segsem_source"] == "error").sum())
        out.append(row)
    df = pd.DataFrame(out)
    order = sorted(range(len(df)), key=lambda i: _case_sort_key([df["exposure_case"].iloc[i]])[0])
    return df.iloc[order].reset_index(drop=True)


def _summary(per_sample, times, model, image_errors, has_model: bool) -> dict:
    from .registry import model_label

    summary: dict[str, Any] = {"n": int(len(per_sample)), "model": model_label(model)}
    for name in PIPELINES:
        summary[name] = {m: float(per_sample[f"{name}_{m}"].mean()) for m in METRICS}
        summary[name]["epe_nm"] = float(per_sample[f"{name}_epe_nm"].mean())
    fallback = int((per_sample["segsem_source"] == "fallback").sum()) if has_model else 0
    summary["fallback_count"] = fallback
    summary["fallback_rate"] = fallback / len(per_sample) if has_model else 0.0
    if has_model and "segsem_score_true_iou" in per_sample:
        summary["calibration"] = calibration(per_sample["segsem_score"], per_sample["segsem_score_true_iou"])
    summary["ms_per_image"] = {n: float(times.loc[times["pipeline"] == n, "ms"].mean()) for n in PIPELINES}
    summary["improvement_pct"] = {
        m: (100.0 * (summary["segsem"][m] - summary["standard"][m]) / summary["standard"][m]
            if summary["standard"][m] else None)
        for m in ("iou", "precision", "recall", "f1")
    }
    # the fair comparison: SegSEM against the better of the two classical paths on the same targets
    best = max(("standard", "standard_ep"), key=lambda n: summary[n]["iou"])
    summary["best_classical"] = best
    summary["segsem_minus_best_classical"] = {m: summary["segsem"][m] - summary[best][m] for m in METRICS}
    summary["errors"] = {"targets": int((per_sample["segsem_source"] == "error").sum()), "images": image_errors}
    return summary


def table_one(report: EvaluationReport, metrics: tuple[str, ...] = ("iou", "f1", "epe_px")):
    """Table I as a frame: a row per exposure case and one for all, a column per metric and pipeline.

    Columns are (metric, pipeline) pairs, pipelines named as :data:`PIPELINE_NAMES` does,
    then ``targets`` and ``fallback`` (targets on which SegSEM fell back).
    """
    import pandas as pd

    pc, s = report.per_case, report.summary
    rows = {str(r["exposure_case"]): {**{(m, PIPELINE_NAMES[n]): r[f"{m}_{n}_mean"] for m in metrics for n in PIPELINES},
                                      ("targets", ""): int(r["n"]), ("fallback", ""): int(r["fallback_count"])}
            for _, r in pc.iterrows()}
    rows["all"] = {**{(m, PIPELINE_NAMES[n]): s[n][m] for m in metrics for n in PIPELINES},
                   ("targets", ""): int(s["n"]), ("fallback", ""): int(s["fallback_count"])}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.index.name = "exposure case"
    return out


def format_table(report: EvaluationReport) -> str:
    """Table I as text: per case, the means of standard / standard + edge placement / SegSEM."""
    pc = report.per_case
    head = (f"{'case':>6} {'avg exp':>9} {'n':>4}  " + "  ".join(f"{m + ' (std/+ep/segsem)':>23}" for m in METRICS)
            + f"  {'ms/img':>8} {'fallback':>8}")
    lines = ["columns: standard / standard + edge placement / SegSEM", head, "-" * len(head)]

    def cell(values) -> str:
        return "/".join(f"{v:.3f}" for v in values)

    for _, row in pc.iterrows():
        lines.append(f"{str(row['exposure_case']):>6} {row['average_exposure']:9.0f} {row['n']:4d}  "
                     + "  ".join(f"{cell(row[f'{m}_{n}_mean'] for n in PIPELINES):>23}" for m in METRICS)
                     + f"  {row['ms_per_image_segsem']:8.1f} {row['fallback_count']:8d}")
    s = report.summary
    lines.append("-" * len(head))
    lines.append(f"{'all':>6} {'':>9} {s['n']:4d}  " + "  ".join(
        f"{cell(s[n][m] for n in PIPELINES):>23}" for m in METRICS)
        + f"  {s['ms_per_image']['segsem']:8.1f} {s['fallback_count']:8d}")
    imp = ", ".join(f"{m} {v:+.1f}%" for m, v in s["improvement_pct"].items() if v is not None)
    best = PIPELINE_NAMES[s["best_classical"]]
    d = s["segsem_minus_best_classical"]
    lines.append(f"model: {s['model']}; SegSEM against standard: {imp}; fallback rate {s['fallback_rate']:.1%}")
    lines.append(f"SegSEM against the best classical path ({best}): IoU {d['iou']:+.3f}, EPE {d['epe_px']:+.3f} px")
    cal = s.get("calibration")
    if cal and cal.get("n"):
        corr = f", correlation {cal['correlation']:.2f}" if cal.get("correlation") is not None else ""
        lines.append(f"gate calibration: predicted IoU {cal['mean_predicted']:.3f} against true {cal['mean_true']:.3f} "
                     f"(top candidate, mean absolute error {cal['mean_abs_error']:.3f}{corr})")
    return "\n".join(lines)
