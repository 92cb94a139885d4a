"""Labels a user can make: the pipeline proposes a mask per target, the user accepts or rejects each,
and the accepted masks become a dataset that ``segsem finetune`` takes.

``segsem label IMAGES --out DATASET`` runs :func:`label_images`:

1. ``DATASET/proposals/`` is an ``extract`` run on IMAGES (targets from prompts, a layout or
   discovery, as ``segsem extract`` finds them): a mask and a close-up overlay per target.
2. ``DATASET/review.csv`` lists every proposal, one row per target, with its overlay and an
   ``accept`` column: ``yes`` where the pipeline finished cleanly, ``no`` where it flagged the
   target. The user edits ``accept`` (in any spreadsheet, or with :func:`review_widget` in a
   notebook) and runs the same command again.
3. ``DATASET/images/``, ``masks/`` and ``meta.csv`` hold the images with at least one
   accepted target, their accepted masks as instance labels, and each image's pixel size.

Running it again resumes the proposals, keeps every decision already in ``review.csv``,
and writes the dataset anew from the decisions.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import Dataset, atomic_write, read_mask, write_image
from .errors import SegSEMError

__all__ = ["REVIEW_FIELDS", "LabelSummary", "label_images", "read_review", "write_labelled_dataset", "review_widget"]

#: Columns of ``review.csv``.
REVIEW_FIELDS = ["stem", "label", "prompt_x", "prompt_y", "source", "status", "message", "overlay", "accept"]

_YES = {"yes", "y", "1", "true", "accept", "accepted"}
_NO = {"no", "n", "0", "false", "reject", "rejected"}


@dataclass(frozen=True)
class LabelSummary:
    """What :func:`label_images` or :func:`write_labelled_dataset` did.

    Attributes
    ----------
    root : Path
        The labelled dataset.
    proposals : int
        Targets with a proposed mask (listed in ``review.csv``).
    accepted, rejected : int
        Proposals whose ``accept`` is yes, no.
    images : int
        Images written to the dataset (those with at least one accepted mask).
    failed : list of (stem, label, message)
        Targets (or whole images, label empty) the pipeline could not segment: no proposal.
    """

    root: Path
    proposals: int
    accepted: int
    rejected: int
    images: int
    failed: list

    def format(self) -> str:
        return (f"{self.proposals} proposed masks ({self.accepted} accepted, {self.rejected} rejected) in "
                f"{self.root / 'review.csv'}; {self.images} images with accepted masks in {self.root}"
                + (f"; {len(self.failed)} targets without a proposal (status error in the proposals' records.csv)"
                   if self.failed else ""))


def _accepted(value: str, where: str) -> bool:
    v = str(value).strip().lower()
    if v in _YES:
        return True
    if v in _NO:
        return False
    raise SegSEMError(f"{where}: accept={value!r}; expected yes or no")


def read_review(path: str | Path) -> list[dict]:
    """The rows of a ``review.csv``, each with ``accepted`` (bool) added.

    Raises
    ------
    SegSEMError
        If the file lacks a column of :data:`REVIEW_FIELDS` or an ``accept`` value is not
        yes or no (naming the row).
    """
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("stem", "label", "overlay", "accept") if c not in (reader.fieldnames or [])]
        if missing:
            raise SegSEMError(f"{path}: expected columns {', '.join(REVIEW_FIELDS)}; missing {', '.join(missing)}")
        rows = list(reader)
    for i, row in enumerate(rows):
        row["accepted"] = _accepted(row["accept"], f"{path}: row {i + 2} ({row['stem']}:{row['label']})")
    return rows


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    from .batch import _write_rows

    atomic_write(path, lambda tmp: _write_rows(tmp, rows, fields))


def write_labelled_dataset(root: str | Path, images: str | Path | Dataset | None = None) -> LabelSummary:
    """Write ``images/``, ``masks/`` and ``meta.csv`` of ``root`` from the decisions in ``root/review.csv``.

    Each image with at least one accepted proposal is copied as it is (its metadata kept),
    with a mask holding its accepted masks as instances 1, 2, ... (a pixel two accepted
    masks share goes to the later one). Images without an accepted mask are left out, and
    so are the files of an earlier run that no longer qualify.

    Parameters
    ----------
    root : path
        The folder :func:`label_images` wrote.
    images : path or Dataset, optional
        Where the images are (default: as recorded in ``root/label.json``); its meta.csv
        columns (exposure case, tone, ...) are carried over.
    """
    root = Path(root)
    rows = read_review(root / "review.csv")
    info_path = root / "label.json"
    if not info_path.exists():
        raise SegSEMError(f"{info_path}: missing; run label_images (segsem label) on the images first")
    info = json.loads(info_path.read_text())
    proposals = root / info["proposals"]
    ds = images if isinstance(images, Dataset) else Dataset(images or info["images"])
    sizes = {}
    with open(proposals / "images.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            # a default (no pixel size anywhere) is not written down as if it were known
            sizes[r["stem"]] = "" if r["pixel_size_source"].startswith("default") else r["pixel_size_nm"]
    by_stem: dict[str, list[dict]] = {}
    for r in rows:
        if r["accepted"]:
            by_stem.setdefault(r["stem"], []).append(r)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for old in (root / sub).iterdir():  # a stem whose masks were all rejected since the last run
            if old.stem not in by_stem:
                old.unlink()
    meta_rows = []
    for stem, accepted in sorted(by_stem.items()):
        if stem not in ds.images:
            raise SegSEMError(f"{root / 'review.csv'}: stem {stem!r} is not an image of {ds.source}")
        labels = None
        for k, r in enumerate(accepted, start=1):
            m = read_mask(root / r["overlay"].replace(".overlay.png", ".mask.png")) > 0
            if labels is None:
                labels = np.zeros(m.shape, np.uint16 if len(accepted) > 255 else np.uint8)
            labels[m] = k
        src = ds.images[stem]
        for old in (root / "images").glob(f"{stem}.*"):
            if old.name != src.name:
                old.unlink()
        shutil.copy2(src, root / "images" / src.name)
        write_image(root / "masks" / f"{stem}.png", labels)
        extra = {k: v for k, v in ds.row(stem).items() if k not in ("stem", "pixel_size_nm", "split")}
        meta_rows.append({"stem": stem, "pixel_size_nm": sizes.get(stem, ""), **extra})
    fields = ["stem", "pixel_size_nm"] + sorted({k for r in meta_rows for k in r} - {"stem", "pixel_size_nm"})
    _write_csv(root / "meta.csv", meta_rows, fields)
    failed = []
    rec = proposals / "records.csv"
    if rec.exists():
        with open(rec, newline="") as fh:
            failed = [(r["stem"], r["label"], r["message"]) for r in csv.DictReader(fh) if r["status"] == "error"]
    n_yes = sum(r["accepted"] for r in rows)
    return LabelSummary(root=root, proposals=len(rows), accepted=n_yes, rejected=len(rows) - n_yes,
                        images=len(meta_rows), failed=failed)


def label_images(images: str | Path | Dataset, out: str | Path, *, model=None, config=None,
                 proposals: str | Path | None = None, progress: bool = True, engine=None) -> LabelSummary:
    """Propose a mask per target of ``images``, write the review sheet, and the dataset its decisions give.

    Parameters
    ----------
    images : path or Dataset
        Images as ``segsem extract`` takes them (a folder of instrument files, a dataset
        folder, with prompts.csv or a layout when there are).
    out : path
        The labelled dataset's folder; see the module's description for what it holds.
    model : optional
        The model that proposes, as for :func:`segsem_lite.batch.extract_dataset` (None:
        the standard pipeline).
    proposals : path, optional
        An ``extract`` run of the same images to take the proposals from (finished
        targets are not redone); default ``out/proposals``.

    Returns
    -------
    LabelSummary
    """
    from .batch import extract_dataset
    from .config import PipelineConfig
    from .engine import Engine

    out = Path(out)
    ds = images if isinstance(images, Dataset) else Dataset(images)
    if out.resolve() == ds.root.resolve():
        raise SegSEMError(f"--out {out}: the labelled dataset needs its own folder, not the images' own")
    proposals = Path(proposals) if proposals is not None else out / "proposals"
    extract_dataset(ds, proposals, model=model, config=config or PipelineConfig(), resume=True, progress=progress,
                    engine=engine or Engine())
    with open(proposals / "records.csv", newline="") as fh:
        records = list(csv.DictReader(fh))
    info = {"images": str(ds.source.resolve()), "proposals": os.path.relpath(proposals, out)}
    atomic_write(out / "label.json", lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
    review = out / "review.csv"
    kept = {(r["stem"], r["label"]): r["accept"] for r in read_review(review)} if review.exists() else {}
    rows = []
    for r in records:
        if r["status"] == "error":
            continue
        overlay = proposals / r["stem"] / f"{r['label'] or 'p'}.overlay.png"
        if not overlay.exists():
            continue
        rows.append({**{k: r.get(k, "") for k in REVIEW_FIELDS},
                     "overlay": Path(os.path.relpath(overlay, out)).as_posix(),
                     "accept": kept.get((r["stem"], r["label"]), "yes" if r["status"] == "ok" else "no")})
    _write_csv(review, rows, REVIEW_FIELDS)
    return write_labelled_dataset(out, ds)


def review_widget(root: str | Path, *, columns: int = 4, size_px: int = 160):
    """A grid of the proposals' overlays with an accept toggle each, saved to ``review.csv`` as they change.

    For a notebook (ipywidgets). Run :func:`write_labelled_dataset` (or ``segsem label``
    again) after the review to rebuild the dataset.
    """
    import ipywidgets as w

    root = Path(root)
    path = root / "review.csv"
    rows = read_review(path)

    def save(*_):
        for r, box in zip(rows, toggles):
            r["accept"] = "yes" if box.value else "no"
        _write_csv(path, rows, REVIEW_FIELDS)

    cells, toggles = [], []
    for r in rows:
        img = w.Image(value=(root / r["overlay"]).read_bytes(), format="png", width=size_px)
        box = w.Checkbox(value=r["accepted"], description=f"{r['stem']}:{r['label']}", indent=False)
        box.observe(save, names="value")
        toggles.append(box)
        cells.append(w.VBox([img, box]))
    return w.GridBox(cells, layout=w.Layout(grid_template_columns=f"repeat({columns}, {size_px + 20}px)"))
