import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from segsem_lite.cli import main
from segsem_lite.dataset import write_image


def _segsem(*args):
    return subprocess.run([sys.executable, "-m", "segsem_lite.cli", *map(str, args)], capture_output=True, text=True)


def test_synth_then_check(tmp_path):
    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--n-per-case", "1", "--seed", "3", "--size", "128",
                 "--cases", "1,10", "--quiet"]) == 0
    r = _segsem("data", "check", out)
    assert r.returncode == 0, r.stderr
    assert "images         2" in r.stdout and "1: 1, 10: 1" in r.stdout


def test_synth_wide_writes_a_training_set_with_its_appearance(tmp_path):
    out = tmp_path / "w"
    assert main(["synth", "--out", str(out), "--renderer", "wide", "--n-per-case", "2", "--seed", "4",
                 "--size", "96", "--quiet"]) == 0
    r = _segsem("data", "check", out)
    assert r.returncode == 0, r.stderr
    assert "images         20" in r.stdout and "train: 10, test: 10" in r.stdout
    header = (out / "meta.csv").read_text().splitlines()[0]
    assert {"material_contrast", "edge_gain", "lag_weight", "jpeg_quality"} <= set(header.split(","))
    r = _segsem("synth", "--out", tmp_path / "c", "--renderer", "wide", "--chip-sites", "2", "--seed", "1")
    assert r.returncode != 0 and "--renderer wide" in r.stderr and "Traceback" not in r.stderr


def test_check_bad_dataset_exits_non_zero_without_traceback(tmp_path, small_dataset):
    ds = tmp_path / "bad"
    shutil.copytree(small_dataset, ds)
    img = sorted((ds / "images").iterdir())[0]
    img.write_bytes(img.read_bytes()[:100])
    r = _segsem("data", "check", ds)
    assert r.returncode == 1
    assert f"{img}: unreadable image" in r.stderr and "Traceback" not in r.stderr
    r = _segsem("data", "check", tmp_path / "nowhere")
    assert r.returncode == 1 and "no such dataset folder" in r.stderr


def test_extract_survives_a_bad_image_and_resumes(tmp_path, small_dataset):
    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    stems = sorted(p.stem for p in (ds / "images").iterdir())
    (ds / "images" / f"{stems[0]}.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = _segsem("extract", ds, "--out", out, "--model", "traditional", "--quiet")
    assert r.returncode == 1 and "unreadable image" in r.stderr and "Traceback" not in r.stderr
    rows = list(csv.DictReader(open(out / "records.csv")))
    assert rows[0]["stem"] == stems[0] and rows[0]["status"] == "error"
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) > 10 and all(row["source"] == "standard" for row in ok)
    first = ok[0]
    folder = out / first["stem"]
    for suffix in (".mask.png", ".contours.json", ".gds", ".overlay.png"):
        assert (folder / f"{first['label']}{suffix}").exists()
    assert (folder / f"{first['stem']}.gds").exists() and (folder / f"{first['stem']}.contours.csv").exists()
    doc = json.loads((folder / f"{first['label']}.contours.json").read_text())
    assert doc["features"][first["label"]]["source"] == "standard"

    # interrupt: forget the last image's rows, then resume; finished targets are not redone
    keep = [row for row in rows if row["stem"] != stems[-1]]
    with open(out / "records.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=rows[0].keys())
        w.writeheader()
        w.writerows(keep)
    mtime = (folder / f"{first['label']}.mask.png").stat().st_mtime_ns
    r = _segsem("extract", ds, "--out", out, "--model", "traditional", "--resume", "--quiet")
    again = list(csv.DictReader(open(out / "records.csv")))
    assert (folder / f"{first['label']}.mask.png").stat().st_mtime_ns == mtime
    assert sorted((x["stem"], x["label"]) for x in again if x["status"] == "ok") == \
        sorted((x["stem"], x["label"]) for x in ok)


def test_evaluate_writes_table_one(tmp_path, small_dataset):
    out = tmp_path / "ev"
    r = _segsem("evaluate", small_dataset, "--out", out, "--model", "traditional", "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    for key in ("n", "standard", "segsem", "fallback_rate", "ms_per_image"):
        assert key in s
    assert set(s["standard"]) >= {"iou", "precision", "recall", "f1", "epe_px"}
    assert s["standard"]["iou"] == pytest.approx(s["segsem"]["iou"]) and s["fallback_rate"] == 0
    import pandas as pd

    pc = pd.read_csv(out / "per_case.csv")
    assert list(pc["exposure_case"]) == list(range(1, 11)) and pc["n"].sum() == s["n"]
    assert {"iou_standard_mean", "iou_segsem_std", "fallback_count", "ms_per_image_segsem", "average_exposure"} <= set(pc)
    assert "model: standard" in r.stdout


def test_user_errors_are_one_line(tmp_path, small_dataset):
    r = _segsem("evaluate", small_dataset, "--out", tmp_path / "x", "--model", "traditional", "--set", "gate.tau=3")
    assert r.returncode == 2 and r.stderr.strip().startswith("segsem: error: gate.tau: unknown setting")
    r = _segsem("evaluate", small_dataset, "--out", tmp_path / "x", "--model", "traditional",
                "--set", "fallback.k_values=[0.1, 7]")
    assert r.returncode == 2 and "k_values=[0.1, 7]: expected Sauvola's k values in (-1, 1)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_evaluate_and_extract_with_a_sam2_checkpoint(tmp_path, small_dataset):
    import torch

    from segsem_lite.sam import mini_spec
    from segsem_lite.sam.models import build_model, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "mini.pt", build_model(mini_spec("mini-test")), mini_spec("mini-test"))
    out = tmp_path / "ev"
    r = _segsem("evaluate", small_dataset, "--out", out, "--model", ckpt, "--device", "cpu", "--split", "test",
                "--set", "gate.tau_conf=0.0", "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "mini-test" and 0 <= s["fallback_rate"] <= 1
    cal = s["calibration"]
    assert cal["n"] == s["n"] - s["errors"]["targets"] and 0 <= cal["mean_true"] <= 1
    assert sum(b["n"] for b in cal["bins"]) == cal["n"] and "gate calibration: predicted IoU" in r.stdout
    assert s["ms_per_image"]["segsem"] > s["ms_per_image"]["standard"]
    r = _segsem("extract", small_dataset, "--out", tmp_path / "ex", "--model", ckpt, "--quiet")
    rows = list(csv.DictReader(open(tmp_path / "ex" / "records.csv")))
    assert rows and all(row["source"] in ("sam2", "fallback") for row in rows if row["status"] == "ok")
    assert all(row["n_candidates"] == "3" for row in rows if row["status"] == "ok")


@pytest.mark.torch
def test_calibrate_writes_a_checkpoint_the_other_commands_load(tmp_path, small_dataset):
    out = tmp_path / "cal.pt"
    r = _segsem("calibrate", small_dataset, "--model", "mini-sem", "--out", out, "--split", "train", "--per-bin", "10",
                "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "calibrated the IoU head on" in r.stdout and out.is_file()
    r = _segsem("evaluate", small_dataset, "--model", out, "--split", "test", "--out", tmp_path / "ev", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "gate calibration" in r.stdout
    for args, message in (((tmp_path / "nowhere",), "no such dataset folder"),
                          ((small_dataset, "--split", "holdout"), "split 'holdout': expected train, val or test")):
        r = _segsem("calibrate", *args, "--model", "mini-sem", "--out", tmp_path / "x.pt", "--quiet")
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_extract_goes_on_past_a_tiny_image_and_flags_border_targets(tmp_path):
    from segsem_lite.dataset import write_image
    from segsem_lite.synth.independent import write_independent_dataset

    data = write_independent_dataset(tmp_path / "d", n_per_condition=2, seed=5, size=128,
                                     conditions=("bright_resist", "no_edge_band"))
    write_image(data / "images" / "aaa_tiny.png", np.zeros((1, 1), np.uint8))
    r = _segsem("extract", data, "--out", tmp_path / "out", "--model", "traditional", "--quiet")
    rows = list(csv.DictReader(open(tmp_path / "out" / "records.csv")))
    tiny = [row for row in rows if row["stem"] == "aaa_tiny"]
    assert len(tiny) == 1 and tiny[0]["status"] == "error" and "1x1 px: too small" in tiny[0]["message"]
    done = {row["stem"] for row in rows if row["status"] == "ok"}
    assert len(done) == 4, "every image after the bad one was processed"
    assert r.returncode == 1 and "aaa_tiny" in r.stderr
    assert {row["touches_border"] for row in rows if row["status"] == "ok"} <= {"0", "1"}


def test_extract_a_folder_of_files_with_prompts_pixel_size_crop_and_a_bad_file(tmp_path):
    import csv
    import shutil

    from segsem_lite.dataset import real_samples
    from segsem_lite.discover import discover_features
    from segsem_lite.instrument import read_sem

    folder = tmp_path / "tool"
    folder.mkdir()
    shutil.copy(real_samples() / "Ctest1.tif", folder / "Ctest1.tif")
    (folder / "broken.tif").write_bytes(b"II*\x00not an image")
    holes = discover_features(read_sem(folder / "Ctest1.tif").image[:676]).features
    inner = [f for f in holes if not f.touches_border][:3]
    (folder / "prompts.csv").write_text("stem,x,y,label\n" + "".join(
        f"Ctest1,{f.prompt_xy[0]},{f.prompt_xy[1]},h{i}\n" for i, f in enumerate(inner)))
    out = tmp_path / "out"
    r = _segsem("extract", folder, "--out", out, "--model", "traditional", "--quiet", "--pixel-size", "2.0")
    assert r.returncode == 1 and "broken.tif: unreadable image" in r.stderr and "Traceback" not in r.stderr
    rows = list(csv.DictReader(open(out / "records.csv")))
    done = [row for row in rows if row["stem"] == "Ctest1"]
    assert [row["label"] for row in done] == ["h0", "h1", "h2"] and all(row["status"] == "ok" for row in done)
    assert all(row["kind"] == "hole" and float(row["pixel_size_nm"]) == 2.0 for row in done)
    images = {row["stem"]: row for row in csv.DictReader(open(out / "images.csv"))}
    assert images["Ctest1"]["pixel_size_source"] == "--pixel-size" and images["broken"]["status"] == "error"
    # a crop instead of the data bar, and discovery inside it only
    out2 = tmp_path / "crop"
    (folder / "prompts.csv").unlink()
    (folder / "broken.tif").unlink()
    r = _segsem("extract", folder / "Ctest1.tif", "--out", out2, "--model", "traditional", "--quiet",
                "--crop", "100,50,400,300")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out2 / "records.csv")))
    assert len(rows) > 20
    assert all(100 <= float(row["prompt_x"]) < 400 and 50 <= float(row["prompt_y"]) < 300 for row in rows)
    image = next(csv.DictReader(open(out2 / "images.csv")))
    assert (image["field_x0"], image["field_y1"], image["data_bar_row"]) == ("100", "300", "")
    assert image["pixel_size_source"].startswith("Zeiss")
    assert _segsem("extract", folder, "--out", out2, "--crop", "5,5,1").returncode == 2
