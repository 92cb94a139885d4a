import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from segsem_lite import Dataset
from segsem_lite.sam import mini_spec
from segsem_lite.sam.finetune import (TRAIN_MODES, FinetuneConfig, TargetSampler, _rot_flip, _spread, finetune,
                                      photometric, set_trainable)
from segsem_lite.sam.models import build_model, load_model_file

SMALL = dict(max_steps=3, batch_size=2, val_every=3, save_every=3, lr=1e-3, max_val_targets=4)


@pytest.mark.parametrize("mode", list(TRAIN_MODES))
def test_frozen_parameters_are_bit_identical_after_training(mode, small_dataset, tmp_path):
    torch.manual_seed(0)
    spec = mini_spec("t")
    model = build_model(spec)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = finetune(model, spec, small_dataset, tmp_path / mode, config=FinetuneConfig(train=mode, **SMALL),
                      device="cpu", progress=False)
    trained = TRAIN_MODES[mode]
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed, "something was trained"
    assert all(k.split(".")[0] in trained for k in changed), sorted(changed)[:3]
    for top in ("image_encoder", "sam_mask_decoder"):
        if top not in trained:
            assert not any(k.startswith(top) for k in changed)
    counts = result.parameter_counts
    assert counts["sam_mask_decoder"]["trainable"] == (counts["sam_mask_decoder"]["total"] if mode != "encoders" else 0)
    assert counts["image_encoder"]["trainable"] == (0 if mode == "decoder" else counts["image_encoder"]["total"])
    best, spec_back = load_model_file(result.best_checkpoint)
    assert spec_back.metadata["train"] == mode and "val_iou" in spec_back.metadata


def test_set_trainable_counts():
    model = build_model(mini_spec("t"))
    counts = set_trainable(model, "encoders")
    assert counts["sam_prompt_encoder"]["trainable"] == counts["sam_prompt_encoder"]["total"] > 0
    assert counts["memory_attention"]["trainable"] == 0


def test_augmentation_keeps_point_mask_and_image_together():
    s = 32
    rng = np.random.default_rng(0)
    x = rng.random((3, s, s)).astype(np.float32)
    tgt = np.zeros((s, s), bool)
    tgt[3:9, 20:30] = True
    x[:, tgt] = 5.0  # mark the target in the image
    point = np.array([25.5, 6.5])  # (x, y) input coordinates of pixel (row 6, col 25)
    for k in range(4):
        for flip in (False, True):
            x2, t2, pts = _rot_flip(x, tgt, np.vstack([point, [[20.0, 3.0], [30.0, 9.0]]]), k, flip, s)
            r, c = int(pts[0, 1] - 0.5), int(pts[0, 0] - 0.5)
            assert t2[r, c] and x2[0, r, c] == 5.0 and t2.sum() == tgt.sum()
            # the target's box corners go along: the box spans the moved target exactly
            rows, cols = np.nonzero(t2)
            lo, hi = pts[1:].min(0), pts[1:].max(0)
            assert (lo == [cols.min(), rows.min()]).all() and (hi == [cols.max() + 1, rows.max() + 1]).all()


def test_reimaged_windows_change_the_image_but_not_the_target_or_point(small_dataset):
    ds = Dataset(small_dataset)
    sampler = TargetSampler.from_dataset(ds, ds.split("train")[:1], mini_spec("t"))
    item = sampler.items[0]
    plain = sampler.sample(item, rng=np.random.default_rng(3))
    other = sampler.sample(item, rng=np.random.default_rng(3), reimage=True)
    assert (plain["target"] == other["target"]).all() and (plain["point"] == other["point"]).all()
    assert np.abs(plain["image"] - other["image"]).mean() > 0.05
    # the re-imaged window stays a unit image whose contrast and noise vary from draw to draw
    rng = np.random.default_rng(0)
    img = np.tile(np.where(np.arange(64) < 32, 60, 180).astype(np.uint8), (64, 1))
    outs = [photometric(img, rng) for _ in range(40)]
    assert all(o.dtype == np.float32 and o.shape == img.shape and 0 <= o.min() and o.max() <= 1 for o in outs)
    steps = [o[:, 40:].mean() - o[:, :24].mean() for o in outs]
    noise = [o[:, 40:].std() for o in outs]
    assert min(steps) < 0.15 < 0.4 < max(steps) and max(noise) > 5 * min(noise)
    with pytest.raises(Exception, match="photometric"):
        FinetuneConfig(photometric=1.5)


def test_validation_takes_targets_from_every_image(small_dataset):
    ds = Dataset(small_dataset)
    sampler = TargetSampler.from_dataset(ds, ds.stems[:4], mini_spec("t"))
    stems = [it.target.stem for it in sampler.items]
    assert len(set(stems)) == 4 and max(stems.count(s) for s in set(stems)) > 2
    picked = _spread(sampler.items, 4)
    assert sorted(it.target.stem for it in picked) == sorted(set(stems))
    assert len(_spread(sampler.items, 10 ** 6)) == len(sampler.items)


def test_points_are_drawn_afresh_inside_the_target(small_dataset):
    ds = Dataset(small_dataset)
    sampler = TargetSampler.from_dataset(ds, ds.split("train")[:2], mini_spec("t"))
    rng = np.random.default_rng(0)
    pts = []
    for _ in range(5):
        s = sampler.sample(sampler.items[0], rng=rng)
        r, c = int(s["point"][1] - 0.5), int(s["point"][0] - 0.5)
        assert s["target"][r, c]
        pts.append(tuple(s["point"]))
    assert len(set(pts)) == 5


def test_targets_without_a_design_train_in_the_window_inference_gives_them(tmp_path):
    """Without a design, inference knows only the point: a window_px window centred on it.
    Training draws the point first and centres the window on it; extent windows fit the mask."""
    from segsem_lite.synth.generic import write_generic_dataset

    ds = Dataset(write_generic_dataset(tmp_path / "g", n=4, seed=3, val_fraction=0.0))
    spec = mini_spec("t")
    sampler = TargetSampler.from_dataset(ds, ds.stems, spec)
    assert all(it.target.design.bbox_xyxy() is None for it in sampler.items)
    rng = np.random.default_rng(0)
    size, centre = spec.image_size, spec.image_size / 2
    for it in sampler.items:
        free = [sampler.sample(it, rng=rng) for _ in range(3)]
        fitted = sampler.sample(it, rng=rng, extent=True)
        for smp in (*free, fitted):
            r, c = int(smp["point"][1]), int(smp["point"][0])
            assert smp["target"][r, c], "the point is on the target"
        for smp in free:  # window of window_px around the drawn point (+- half a pixel)
            assert np.allclose(smp["point"], centre, atol=1.0)
        val = sampler.sample(it, rng=None)  # validation: around the target's prompt, as at inference
        assert np.allclose(val["point"], centre, atol=1.0)
        area = it.mask.sum() * (size / spec.input.window_px) ** 2
        # the whole target, and only it: the window reflects the image beyond its border, not the target
        assert abs(free[0]["target"].sum() - area) <= 0.1 * area + 30
        side = max(spec.input.min_window_px, spec.input.context * max(np.ptp(np.nonzero(it.mask)[0]),
                                                                         np.ptp(np.nonzero(it.mask)[1])))
        assert fitted["target"].sum() > free[0]["target"].sum() or side >= spec.input.window_px


def test_point_windows_train_a_designed_target_as_one_without_a_layout(small_dataset):
    """With design=False a target that has a design is windowed around the drawn point, window_px wide,
    and gets no box: what inference gives targets of an image without a layout."""
    ds = Dataset(small_dataset)
    spec = mini_spec("t")
    sampler = TargetSampler.from_dataset(ds, ds.split("train")[:2], spec)
    it = next(i for i in sampler.items if i.target.design.bbox_xyxy() is not None)
    designed = sampler.sample(it, rng=np.random.default_rng(1), box=True)
    assert not np.isnan(designed["box"]).any()
    for seed in range(3):
        blind = sampler.sample(it, rng=np.random.default_rng(seed), box=True, design=False)
        assert np.isnan(blind["box"]).all()
        assert np.allclose(blind["point"], spec.image_size / 2, atol=1.0)
        r, c = int(blind["point"][1]), int(blind["point"][0])
        assert blind["target"][r, c]
    with pytest.raises(Exception, match="point_windows"):
        FinetuneConfig(point_windows=-0.1)


def test_windows_reflect_the_image_but_not_the_target():
    from segsem_lite.sam.forward import Window

    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    mask = np.zeros((10, 10), np.uint8)
    mask[1:3, 1:3] = 1  # a feature 1 px from the corner
    win = Window(-4, -4, 10, 10)
    assert win.crop(mask).sum() == 16, "reflected: the feature and three mirror copies"
    assert win.crop(mask, fill=0).sum() == 4 and win.crop(mask, fill=0)[5:7, 5:7].all()
    assert (win.crop(image)[4:, 4:] == image[:6, :6]).all() and win.crop(image)[0, 4] == image[4, 0]


def test_box_prompts_from_the_design_train_and_are_used_at_inference(small_dataset, tmp_path):
    from segsem_lite.sam.finetune import _collate
    from segsem_lite.sam.models import clone_spec
    from segsem_lite.sam.predictor import SAM2Predictor

    ds = Dataset(small_dataset)
    spec = mini_spec("t")
    sampler = TargetSampler.from_dataset(ds, ds.split("train")[:2], spec)
    rng = np.random.default_rng(0)
    boxed = sampler.sample(sampler.items[0], rng=rng, box=True)
    plain = sampler.sample(sampler.items[0], rng=rng)
    rows, cols = np.nonzero(boxed["target"])
    (bx0, by0), (bx1, by1) = boxed["box"]
    assert bx0 < cols.mean() < bx1 and by0 < rows.mean() < by1, "the design box surrounds the target"
    batch = _collate([boxed, plain], torch.device("cpu"))
    assert batch["points"].shape == (2, 3, 2)
    assert batch["labels"].tolist() == [[2, 3, 1], [-1, -1, 1]]  # box corners, or padding without a box
    torch.manual_seed(0)
    calibrated_start = clone_spec(spec, iou_calibration={"x": [0.0, 1.0], "y": [0.5, 1.0]})
    result = finetune(build_model(spec), calibrated_start, small_dataset, tmp_path / "box",
                      config=FinetuneConfig(train="all", box_prompts=0.5, **SMALL), device="cpu", progress=False)
    model, trained = load_model_file(result.best_checkpoint)
    assert trained.input.box_prompt and not spec.input.box_prompt
    cal = trained.iou_calibration
    assert cal != calibrated_start.iou_calibration, "a trained head is not described by its start's calibration"
    # best.pt comes calibrated on the run's validation images, or says why not
    assert result.calibration and (("skipped" in result.calibration and not cal)
                                   or ("validation images" in cal["data"] and cal["n"] == result.calibration["n"]))
    # at inference the design's box changes the prompt, hence the candidates
    image = ds.load_image(ds.split("test")[0])
    t = ds.targets(ds.split("test")[0], mask=ds.load_mask(ds.split("test")[0]), shape=image.shape)[0]
    point, region = np.array([t.prompt_xy]), t.design.bbox_xyxy()
    assert region is not None
    out = {}
    for uses_box in (True, False):  # the same window either way: only the prompt differs
        policy = {**trained.to_dict()["input"], "box_prompt": uses_box}
        predictor = SAM2Predictor(model, clone_spec(trained, input=policy))
        predictor.set_image(image)
        out[uses_box] = predictor.predict(point, np.array([1]), region_xyxy=region, return_logits=True)[0]
    assert not np.allclose(out[True], out[False])


def _segsem(*args):
    return [sys.executable, "-m", "segsem_lite.cli", *map(str, args)]


def test_kill_mid_run_and_resume(small_dataset, tmp_path):
    run = tmp_path / "run"
    args = ["finetune", small_dataset, "--model", "mini-scratch", "--train", "encoders", "--out", run, "--steps", 40,
            "--batch-size", 1, "--val-every", 10, "--save-every", 4, "--lr", "1e-3", "--quiet", "--threads", 1,
            "--patience", 0]
    proc = subprocess.Popen(_segsem(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (run / "last.pt").exists() and (run / "log.csv").exists() and \
                len((run / "log.csv").read_text().splitlines()) > 10:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = torch.load(run / "last.pt", weights_only=False)["step"]
    assert 0 < saved_step < 40
    done = subprocess.run(_segsem(*args, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))]
    assert steps == list(range(1, 41)), "every step once, none lost, none repeated"
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 40
    last_model, last_spec = load_model_file(run / "last.pt")  # the last step loads as a model
    assert last_spec.metadata["step"] == 40 and last_spec.metadata["train"] == "encoders"
    changed = subprocess.run(_segsem(*[a if a != "1e-3" else "2e-3" for a in args], "--resume"),
                             capture_output=True, text=True)
    assert changed.returncode == 2 and "cannot resume with different settings (lr)" in changed.stderr


def test_data_parallel_under_torchrun(small_dataset, tmp_path):
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "segsem_lite.cli",
                        "finetune", str(small_dataset), "--model", "mini-scratch", "--out", str(run), "--steps", "4",
                        "--batch-size", "1", "--val-every", "2", "--save-every", "2", "--lr", "1e-3", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2
    assert (run / "best.pt").exists() and len(list(csv.DictReader(open(run / "log.csv")))) == 4


def test_stop_after_keeps_the_schedule(small_dataset, tmp_path):
    from segsem_lite.sam.finetune import _lr_at

    cfg = FinetuneConfig(train="encoders", lr=1e-3, schedule="cosine", max_steps=10, batch_size=1, val_every=5,
                         save_every=5, max_val_targets=2)
    result = finetune(build_model(mini_spec("t")), mini_spec("t"), small_dataset, tmp_path / "r", config=cfg,
                      device="cpu", progress=False, stop_after=3)
    assert result.steps == 3 and result.best_checkpoint.exists()
    assert float(result.log[-1]["lr"]) == pytest.approx(_lr_at(2, cfg), rel=1e-2)
    assert _lr_at(2, cfg) > 0.5 * cfg.lr


def test_recipe_comparison_trains_each_mode_from_one_start(small_dataset, tmp_path):
    from segsem_lite.sam.models import save_checkpoint
    from segsem_lite.sam.recipes import run_recipes

    torch.manual_seed(0)
    start = save_checkpoint(tmp_path / "start.pt", build_model(mini_spec("t")), mini_spec("t"))
    doc = run_recipes(tmp_path / "runs", [small_dataset], start=str(start), data=small_dataset,
                      config=FinetuneConfig(**{**SMALL, "max_steps": 2, "val_every": 1, "save_every": 1}))
    modes = doc["modes"]
    assert list(modes) == list(TRAIN_MODES)
    counts = {m: e["trainable_parameters"] for m, e in modes.items()}
    assert counts["all"] > max(counts["encoders"], counts["decoder"]) and min(counts.values()) > 0
    for e in modes.values():
        t = e["tests"][Path(small_dataset).name]
        assert e["steps"] == 2 and t["targets"] > 0
        assert 0 <= t["model_iou"] <= 1 and 0 <= t["fallback_rate"] <= 1 and t["iou"] >= 0
