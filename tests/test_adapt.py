"""segsem adapt: self-training on unlabelled images, with the real shipped model, as a user runs it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from segsem_lite.cli import main
from segsem_lite.dataset import Dataset, write_image
from segsem_lite.synth.independent import write_independent_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Ten second-renderer images as a plain folder with meta.csv, and wrong masks beside them (never read)."""
    data = write_independent_dataset(tmp_path_factory.mktemp("ind") / "d", n_per_condition=1, seed=37, size=160)
    out = tmp_path_factory.mktemp("plain") / "images"
    (out / "masks").mkdir(parents=True)
    files = sorted((data / "images").iterdir())
    for p in files:
        shutil.copy(p, out / p.name)
        shutil.copy(data / "masks" / f"{p.stem}.png", out / "masks" / f"{p.stem}.png")
    with open(data / "meta.csv", newline="") as fh:
        meta = [r for r in csv.DictReader(fh) if r["stem"] in {p.stem for p in files}]
    write_image(out / "tiny.png", np.zeros((1, 1), np.uint8))  # a bad image: recorded, the others go on
    with open(out / "meta.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(meta[0]))
        w.writeheader()
        w.writerows(meta)
    return out


def test_adapt_pseudo_labels_train_and_resume(folder, tmp_path, capsys):
    from segsem_lite.sam import load_predictor

    run = tmp_path / "run"
    args = ["adapt", str(folder), "--model", "default", "--out", str(run), "--rounds", "1", "--steps", "4",
            "--min-labels", "3", "--threads", "2", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    state = json.loads((run / "adapt.json").read_text())
    (r0,) = state["rounds"]
    assert r0["round"] == 0 and r0["checkpoint"] and r0["best_val_iou"] is not None
    assert 3 <= r0["agreed"] <= r0["targets"]
    assert f"{r0['agreed']} pseudo-labels of {r0['targets']} targets" in printed
    data = Dataset(run / "round0" / "data")
    assert data.has_masks and len(data.stems) == r0["images"]
    # the pseudo-labels are the discovered targets' masks, not the ones beside the images
    truth = Dataset(folder)
    n = 0
    for stem in data.stems:
        labels = data.load_mask(stem)
        n += int(labels.max())
        assert labels.shape == truth.load_image(stem).shape
    assert n == r0["agreed"]
    with open(run / "round0" / "data" / "skipped.csv", newline="") as fh:
        skipped = list(csv.DictReader(fh))
    assert [r["stem"] for r in skipped] == ["tiny"] and "1x1" in skipped[0]["reason"]
    assert (run / "best.pt").is_file()
    assert load_predictor(str(run / "best.pt"), device="cpu") is not None
    # a finished round is not run again; a second round starts from the first one's model
    before = (run / "round0" / "data" / "meta.csv").stat().st_mtime_ns
    assert main(args[:6] + ["--rounds", "2"] + args[8:]) == 0
    state = json.loads((run / "adapt.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1]
    assert (run / "round0" / "data" / "meta.csv").stat().st_mtime_ns == before
    if state["rounds"][1]["checkpoint"]:
        assert json.loads((run / "round1" / "run" / "run.json").read_text())["base"] == r0["checkpoint"]


def test_adapt_names_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["adapt", str(tmp_path / "empty"), "--model", "default", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "empty" in err and len(err.strip().splitlines()) == 1


def test_adapt_needs_a_sam2_model(folder, tmp_path, capsys):
    assert main(["adapt", str(folder), "--model", "traditional", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip()
    assert "--model traditional" in err and len(err.splitlines()) == 1
