"""segsem label: proposals, the review sheet, and the dataset the decisions give, as a user runs it."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from segsem_lite.cli import main
from segsem_lite.dataset import Dataset, read_mask
from segsem_lite.synth.independent import write_independent_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four second-renderer images as a plain folder of files with their meta.csv: no masks, no prompts."""
    data = write_independent_dataset(tmp_path_factory.mktemp("ind") / "d", n_per_condition=1, seed=31, size=160)
    out = tmp_path_factory.mktemp("plain") / "images"
    out.mkdir()
    files = sorted((data / "images").iterdir())[:4]
    for p in files:
        shutil.copy(p, out / p.name)
    with open(data / "meta.csv", newline="") as fh:
        meta = [r for r in csv.DictReader(fh) if r["stem"] in {p.stem for p in files}]
    _write_review(out / "meta.csv", meta)
    return out


def _review(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_review(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_label_proposes_reviews_and_writes_a_dataset_finetune_takes(folder, tmp_path, capsys):
    out = tmp_path / "labelled"
    assert main(["label", str(folder), "--out", str(out), "--model", "traditional", "--quiet"]) == 0
    rows = _review(out / "review.csv")
    assert rows, "targets were discovered and proposed"
    assert all((out / r["overlay"]).is_file() for r in rows)
    with open(out / "proposals" / "records.csv", newline="") as fh:
        records = list(csv.DictReader(fh))
    # every target that got a mask is on the sheet, ok ones accepted and flagged ones not
    finished = [r for r in records if r["status"] != "error"]
    assert len(rows) == len(finished)
    assert all(r["accept"] == ("yes" if r["status"] == "ok" else "no") for r in rows)
    ds = Dataset(out)
    stems = sorted({r["stem"] for r in rows if r["accept"] == "yes"})
    assert ds.stems == stems and ds.has_masks
    for stem in stems:
        mine = [r for r in rows if r["stem"] == stem and r["accept"] == "yes"]
        labels = ds.load_mask(stem)
        assert labels.shape == ds.load_image(stem).shape
        assert labels.max() == len(mine)
        # instance k is the k-th accepted proposal's mask, where no later one overlaps it
        masks = [read_mask(out / r["overlay"].replace(".overlay.png", ".mask.png")) > 0 for r in mine]
        for k, m in enumerate(masks, start=1):
            own = m & ~np.any(masks[k:], axis=0) if k < len(masks) else m
            assert own.any() and (labels[own] == k).all()
        assert not labels[~np.any(masks, axis=0)].any()

    # the user rejects every mask of the first image and one of another, and runs the same command again
    gone = stems[0]
    other = next((s for s in stems[1:] if sum(r["stem"] == s and r["accept"] == "yes" for r in rows) > 1), None)
    assert other is not None, "an image with two accepted masks"
    n_other = sum(r["stem"] == other and r["accept"] == "yes" for r in rows)
    dropped = next(r for r in rows if r["stem"] == other and r["accept"] == "yes")
    for r in rows:
        if r["stem"] == gone or r is dropped:
            r["accept"] = "no"
    _write_review(out / "review.csv", rows)
    assert main(["label", str(folder), "--out", str(out), "--model", "traditional", "--quiet"]) == 0
    again = _review(out / "review.csv")
    assert [r["accept"] for r in again] == [r["accept"] for r in rows], "the decisions are kept"
    ds = Dataset(out)
    assert gone not in ds.stems and not list((out / "images").glob(f"{gone}.*"))
    assert ds.load_mask(other).max() == n_other - 1
    with open(out / "meta.csv", newline="") as fh:
        meta = {r["stem"]: r for r in csv.DictReader(fh)}
    assert set(meta) == set(ds.stems) and all(float(m["pixel_size_nm"]) > 0 for m in meta.values())
    assert all(m["exposure_case"] for m in meta.values()), "the images' own meta columns are carried over"

    # a value that is neither yes nor no stops with the row named, and changes nothing
    again[0]["accept"] = "maybe"
    _write_review(out / "review.csv", again)
    capsys.readouterr()
    assert main(["label", str(folder), "--out", str(out), "--model", "traditional", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "review.csv: row 2" in err[0] and "accept='maybe'" in err[0]
    assert Dataset(out).stems == ds.stems


def test_the_labelled_dataset_trains(folder, tmp_path):
    pytest.importorskip("sam2")
    out = tmp_path / "labelled"
    assert main(["label", str(folder), "--out", str(out), "--model", "traditional", "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["finetune", str(out), "--model", "default", "--train", "encoders", "--out", str(run),
                 "--steps", "2", "--val-every", "2", "--batch-size", "2", "--threads", "1", "--quiet"]) == 0
    assert (run / "best.pt").is_file()
