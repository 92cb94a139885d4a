"""A synthetic chip: one GDS layout, SEM images of sites on it, and stage errors.

Each site is a layout clip of the physics generator (:mod:`segsem_lite.synth.layout`),
placed on a grid of sites of one layout file. Its image is rendered at the true site by
the physics generator or by the second appearance model
(:mod:`segsem_lite.synth.independent`); meta.csv gives a nominal site perturbed by up to
``max_offset_nm`` in each axis, as a stage places a field, and the true site beside it
(``true_x_nm``, ``true_y_nm``) for checking the alignment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cases import EXPOSURE_CASES
from .layout import LAYOUT_KINDS, LayoutClip

__all__ = ["write_chip_dataset", "clip_to_layout", "SITE_PITCH_NM"]

#: Distance between sites on the synthetic chip (nm): more than a field and its search margin.
SITE_PITCH_NM = 5000.0


def clip_to_layout(clip: LayoutClip, center_nm: tuple[float, float], shape: tuple[int, int],
                   pixel_size_nm: float) -> list[np.ndarray]:
    """The clip's features as layout polygons (nm, y up), for an image of ``shape`` centred on ``center_nm``.

    The clip's (u right, v down from the image's top-left corner) becomes
    ``x = cx + u - W ps / 2``, ``y = cy - (v - H ps / 2)``: the image's centre pixel
    ``((W - 1) / 2, (H - 1) / 2)`` lands on the site.
    """
    import gdstk

    rows, cols = shape
    cx, cy = center_nm
    out = []
    for feat in clip.features:
        rects = [gdstk.rectangle((cx + x0 - cols * pixel_size_nm / 2, cy - (y1 - rows * pixel_size_nm / 2)),
                                 (cx + x1 - cols * pixel_size_nm / 2, cy - (y0 - rows * pixel_size_nm / 2)))
                 for x0, y0, x1, y1 in feat.rects]
        merged = gdstk.boolean(rects, [], "or")
        out.append(max((np.asarray(p.points) for p in merged), key=len))
    return out


def write_chip_dataset(out: str | Path, *, n_sites: int, seed: int, size: int = 384, max_offset_nm: float = 100.0,
                       renderer: str = "physics", pixel_nm: tuple[float, float] = (0.6, 2.0),
                       layer: tuple[int, int] = (1, 0), overscan: float = 0.0,
                       roughness: bool = True) -> Path:
    """Write ``chip.gds``, ``images/``, ``masks/`` (labels = layout polygon ids) and ``meta.csv``.

    Parameters
    ----------
    out : path
    n_sites : int
    seed : int
    size : int
        Image side, px.
    max_offset_nm : float
        The nominal site is the true one moved by up to this much in each axis.
    renderer : {"physics", "independent"}
        The physics generator (exposure cases 1-10 in turn) or the second appearance
        model (its named conditions in turn) renders each site.
    pixel_nm : (float, float)
        Pixel size range (log-uniform).
    layer : (int, int)
        Layer and datatype of the design polygons.
    overscan : float
        The layout clip (and the rendering) extends this fraction of the image side beyond
        each border, and the image is its centre: features run past the image's borders
        and the design holds more than the image shows, as on a real chip.
    roughness : bool
        Line-edge roughness on the printed features. It moves each printed feature off its
        design by up to a few nm, so the true site is only as exact as the print; without
        it the printed pattern sits where the design puts it (up to a symmetric CD bias).

    Returns
    -------
    Path
    """
    import gdstk
    import pandas as pd

    from ..dataset import write_image, write_mask
    from . import make_sample
    from .independent import CONDITIONS, render_independent

    if renderer not in ("physics", "independent"):
        raise ValueError(f"Invalid renderer {renderer!r}: expected physics or independent")
    out = Path(out)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    lib = gdstk.Library(name="CHIP", unit=1e-9, precision=1e-12)
    cell = lib.new_cell("CHIP")
    cols_grid = max(1, int(np.ceil(np.sqrt(n_sites))))
    names = list(CONDITIONS)
    rows_meta = []
    next_id = 1
    for i in range(n_sites):
        rng = np.random.default_rng([seed, i, 7])
        ps = float(np.round(np.exp(rng.uniform(np.log(pixel_nm[0]), np.log(pixel_nm[1]))), 4))
        kind = LAYOUT_KINDS[i % len(LAYOUT_KINDS)]
        case = EXPOSURE_CASES[i % len(EXPOSURE_CASES)].case
        pad = int(round(overscan * size))
        full = size + 2 * pad
        sample = make_sample(case, np.random.SeedSequence([seed, i]), size=full, kind=kind, pixel_size_nm=ps,
                             roughness=roughness)
        center = ((i % cols_grid) * SITE_PITCH_NM, -(i // cols_grid) * SITE_PITCH_NM)
        # the centre pixel of the full rendering is the centre pixel of its central crop
        polys = clip_to_layout(sample.clip, center, (full, full), ps)
        ids = list(range(next_id, next_id + len(polys)))
        next_id += len(polys)
        for p in polys:
            cell.add(gdstk.Polygon(p, layer=layer[0], datatype=layer[1]))
        appearance = {}
        if renderer == "physics":
            image, labels = sample.image, sample.instances
            condition = f"case{case}"
        else:
            condition = names[i % len(names)]
            site_px = [np.column_stack([(p[:, 0] - center[0]) / ps + full / 2, full / 2 - (p[:, 1] - center[1]) / ps])
                       for p in polys]
            rendered = render_independent(np.random.SeedSequence([seed, i, 1]), appearance=CONDITIONS[condition],
                                          size=full, tone=sample.clip.tone, outlines=site_px, pixel_size_nm=ps,
                                          roughness=roughness)
            image, labels = rendered.image, rendered.instances
            appearance = {k: round(float(rendered.params[k]), 4) for k in ("contrast", "charging", "tail_px")}
        image, labels = image[pad:pad + size, pad:pad + size], labels[pad:pad + size, pad:pad + size]
        relabel = np.zeros(int(labels.max()) + 1, np.int32)
        for k in range(1, len(relabel)):
            relabel[k] = ids[k - 1] if k <= len(ids) else 0
        stem = f"site{i:03d}"
        write_image(out / "images" / f"{stem}.png", image)
        write_mask(out / "masks" / f"{stem}.png", relabel[labels])
        dx, dy = rng.uniform(-max_offset_nm, max_offset_nm, size=2)
        rows_meta.append({"stem": stem, "pixel_size_nm": ps, "layout_x_nm": round(center[0] + dx, 3),
                          "layout_y_nm": round(center[1] + dy, 3), "true_x_nm": center[0], "true_y_nm": center[1],
                          "layout_kind": kind, "clip_tone": sample.clip.tone, "condition": condition,
                          "exposure_case": case if renderer == "physics" else names.index(condition) + 1,
                          **appearance})
    lib.write_gds(str(out / "chip.gds"))
    pd.DataFrame(rows_meta).to_csv(out / "meta.csv", index=False)
    return out
