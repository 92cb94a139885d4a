"""SEM-to-design alignment and EPE at gauges on synthetic chips with known truth.

For each renderer (the physics generator and the second appearance model) a chip
layout is written with one image per site and nominal sites off by up to +-100 nm
(``segsem synth --chip-sites``). Each image is placed and aligned as ``segsem extract
--layout`` does, and compared with the truth:

- offset error: recovered site against the true site, px;
- against the truth masks' own optimum: the same alignment run on the truth masks, the
  design as drawn (what the printed pattern allows at best; printing moves features off the design by
  LER and dose, which no alignment can tell from a stage error);
- observable: images where that optimum is itself within 0.5 px of the true site (a grating
  longer than the field, with no line end in view, does not fix the position along its
  lines, and no alignment can);
- EPE on the truth masks: gauges every 10 nm on the design edges, EPE of the truth
  masks' contours measured at the recovered site against at the true site, px.

Each renderer runs on clips whose features all lie inside the field and on clips that run
past the image's borders (features cut by the border, gratings longer than the field),
each with line-edge roughness and without. Roughness moves every printed feature off its
design by up to a few nm, so with it the true site is only as exact as the print (the
truth masks' own optimum says how exact); without it the printed pattern sits where the
design puts it, and the offset error is the alignment's alone.

Usage: python benchmarks/bench_layout.py [--sites 40] [--size 384] [--out DIR] [--renderer physics|independent]
       [--inside-only] [--smooth-only] [--seed-offset N]

The eight sets take 50-60 min on one core. One set of 100 sites, e.g. the second renderer's features inside
the clip without roughness on fresh seeds (``--renderer independent --inside-only --smooth-only --sites 100
--seed-offset 100``), takes about 15 min: 40 images move the share within 0.5 px in steps of 2.5%.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from segsem_lite.contours import extract_contours
from segsem_lite.dataset import Dataset, read_mask
from segsem_lite.layout import Site, align_to_design, edge_gauges, gauge_epe
from segsem_lite.synth.chip import write_chip_dataset


def _epe_on_truth(mask: np.ndarray, polygons: dict, site: Site, frame: Site) -> np.ndarray:
    """EPE of the truth masks' contours placed at ``site``, at the gauges that lie inside the image at ``frame``."""
    out = []
    for pid, poly in polygons.items():
        m = mask == pid
        if not m.any():
            continue
        cs = [site.to_layout(c) for c in extract_contours(m)]
        pts, nrm = edge_gauges(poly, 10.0)
        keep = frame.to_pixels(pts)
        inside = ((keep[:, 0] > 1) & (keep[:, 1] > 1) & (keep[:, 0] < mask.shape[1] - 2)
                  & (keep[:, 1] < mask.shape[0] - 2))
        out.append(gauge_epe(pts[inside], nrm[inside], cs, search_nm=40.0))
    return np.concatenate(out) if out else np.zeros(0)


def run(root: Path) -> pd.DataFrame:
    ds = Dataset(root, layout=root / "chip.gds", layer="1/0")
    rows = []
    for stem in ds.stems:
        r = ds.row(stem)
        sem = ds.load_sem(stem)
        ps = float(r["pixel_size_nm"])
        t0 = time.perf_counter()
        pl = ds.place(stem, sem.image, ps, ds.field(stem, sem.image))
        ms = (time.perf_counter() - t0) * 1e3
        mask = read_mask(root / "masks" / f"{stem}.png")
        truth_img = (mask > 0) * 200.0 + 20.0
        g = align_to_design(truth_img, list(pl.polygons.values()), pl.nominal, print_models=((0.0, 0.5),))
        ex, ey = r["true_x_nm"] - r["layout_x_nm"], r["true_y_nm"] - r["layout_y_nm"]
        a = pl.alignment
        true_site = Site((r["true_x_nm"], r["true_y_nm"]), ps, sem.image.shape)
        found_site = pl.nominal.shifted(a.dx_nm, a.dy_nm)
        e_true = _epe_on_truth(mask, pl.polygons, true_site, true_site)
        e_found = _epe_on_truth(mask, pl.polygons, found_site, true_site)
        both = np.isfinite(e_true) & np.isfinite(e_found)
        diff = (e_found[both] - e_true[both]) / ps
        rows.append({"stem": stem, "condition": r["condition"], "kind": r["layout_kind"], "pixel_nm": ps,
                     "ok": a.ok, "score": a.score, "err_px": np.hypot(a.dx_nm - ex, a.dy_nm - ey) / ps,
                     "err_x_px": (a.dx_nm - ex) / ps, "err_y_px": (a.dy_nm - ey) / ps,
                     "vs_truth_optimum_px": np.hypot(a.dx_nm - g.dx_nm, a.dy_nm - g.dy_nm) / ps,
                     "truth_optimum_err_px": np.hypot(g.dx_nm - ex, g.dy_nm - ey) / ps,
                     "epe_truth_diff_mean_px": float(diff.mean()) if diff.size else np.nan,
                     "epe_truth_diff_abs_px": float(np.abs(diff).mean()) if diff.size else np.nan,
                     "epe_truth_at_true_site_px": float(np.nanmean(e_true) / ps) if e_true.size else np.nan,
                     "ms_place": ms, "flag": a.message,
                     # the second renderer's charging step against its material step (4 is its tail gain): near 1
                     # the step at each edge along the scan cancels and only a kink is left
                     "charging_to_contrast": (abs(4 * r["charging"] / r["contrast"])
                                              if "charging" in r and r["contrast"] else np.nan)})
    return pd.DataFrame(rows)


def summarise(d: pd.DataFrame) -> dict:
    ok = d[d.ok]
    seen = d[d.truth_optimum_err_px <= 0.5]
    return {"images": len(d), "flagged": int((~d.ok).sum()),
            "within_0.5px": round(float((d.err_px <= 0.5).mean()), 3),
            "observable": len(seen),
            "observable_within_0.5px": round(float((seen.err_px <= 0.5).mean()), 3),
            "trusted_within_0.5px": round(float((ok.err_px <= 0.5).mean()), 3),
            "trusted_but_off_by_2px_or_more": int((ok.err_px >= 2).sum()),
            "within_1px": round(float((d.err_px <= 1.0).mean()), 3),
            "median_err_px": round(float(d.err_px.median()), 3),
            "within_0.5px_of_truth_optimum": round(float((d.vs_truth_optimum_px <= 0.5).mean()), 3),
            "truth_optimum_within_0.5px": round(float((d.truth_optimum_err_px <= 0.5).mean()), 3),
            "epe_truth_diff_mean_px": round(float(d.epe_truth_diff_mean_px.mean()), 3),
            "epe_truth_diff_abs_px": round(float(d.epe_truth_diff_abs_px.median()), 3),
            "ms_place_median": round(float(d.ms_place.median()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=40)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--renderer", choices=("physics", "independent"), action="append",
                    help="only this renderer's sets (repeat for both; default both)")
    ap.add_argument("--inside-only", action="store_true", help="only the sets whose features lie inside the clip")
    ap.add_argument("--smooth-only", action="store_true", help="only the sets without line-edge roughness")
    ap.add_argument("--seed-offset", type=int, default=0, help="added to every set's seed (11-14): fresh chips")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="bench_layout_"))
    pd.set_option("display.width", 200)
    sets = [(renderer, seed + args.seed_offset, overscan, rough) for rough in (True, False)
            for renderer, seed, overscan in (("physics", 11, 0.0), ("independent", 12, 0.0), ("physics", 13, 0.35),
                                             ("independent", 14, 0.35))
            if (not args.renderer or renderer in args.renderer) and not (args.inside_only and overscan)
            and not (args.smooth_only and rough)]
    for renderer, seed, overscan, rough in sets:
        name = f"{renderer}_overscan{overscan:g}_{'rough' if rough else 'smooth'}"
        root = write_chip_dataset(base / name, n_sites=args.sites, seed=seed, size=args.size, renderer=renderer,
                                  pixel_nm=(1.0, 2.0), overscan=overscan, roughness=rough)
        d = run(root)
        d.to_csv(base / f"{name}.csv", index=False)
        dense = ("; the layout runs 35% past each border (features cut by the border, lines longer than the field)"
                 if overscan else "; every feature inside the clip")
        print(f"\n== {renderer} renderer, seed {seed}: {args.sites} sites, {args.size} px, 1-2 nm/px, stage error up "
              f"to +-100 nm{dense}; {'with' if rough else 'without'} line-edge roughness")
        print(pd.Series(summarise(d)).to_string())
        by = d.groupby("condition").agg(images=("err_px", "size"),
                                        within_half_px=("err_px", lambda v: (v <= 0.5).mean()),
                                        err_x_px=("err_x_px", "median"), err_y_px=("err_y_px", "median"),
                                        epe_diff_px=("epe_truth_diff_mean_px", "mean"), score=("score", "median"))
        print(by.round(3).to_string(), flush=True)
    print(f"\nper-image tables in {base}")


if __name__ == "__main__":
    main()
