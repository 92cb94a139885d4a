"""The shipped SAM2-mini checkpoints: load by name, carry their card, and do their job."""

import numpy as np
import pytest
import torch

from segsem_lite import evaluate_dataset
from segsem_lite.registry import load_model
from segsem_lite.sam import BUILTIN_MODELS
from segsem_lite.sam.models import load_model_file

pytestmark = pytest.mark.torch


def test_both_ship_in_float16_within_25_mb():
    assert set(BUILTIN_MODELS) == {"mini-foundation", "mini-sem"}
    assert sum(p.stat().st_size for p in BUILTIN_MODELS.values()) <= 25e6
    for path in BUILTIN_MODELS.values():
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}


def test_cards_say_how_they_were_made():
    for name, path in BUILTIN_MODELS.items():
        _, spec = load_model_file(path)
        assert {"data", "recipe", "steps", "wall_time_min_2_cores"} <= set(spec.metadata), name
    _, sem = load_model_file(BUILTIN_MODELS["mini-sem"])
    assert sem.input.box_prompt and sem.input.mode == "window"
    cal = sem.iou_calibration
    assert len(cal["x"]) == len(cal["y"]) >= 2 and np.all(np.diff(cal["x"]) > 0) and np.all(np.diff(cal["y"]) >= 0)
    assert cal["mae_after"] <= cal["mae_before"]
    # mini-sem starts from the shipped mini-foundation: the same trunk, block for block
    _, found = load_model_file(BUILTIN_MODELS["mini-foundation"])
    trunk = lambda spec: sorted(o for o in spec.overrides if ".trunk." in o)  # noqa: E731
    assert trunk(sem) == trunk(found) and any("stages=" in o for o in trunk(sem))


def test_mini_sem_is_the_default_and_beats_the_standard_pipeline(small_dataset):
    model = load_model("default", device="cpu")
    assert model.name == "mini-sem" and model.calibrated
    report = evaluate_dataset(small_dataset, model=model, split="test", progress=False)
    s = report.summary
    assert s["segsem"]["iou"] >= s["standard"]["iou"], s
    assert s["fallback_rate"] < 0.5


def test_mini_foundation_segments_generic_objects_from_one_point(tmp_path):
    from segsem_lite.dataset import Dataset
    from segsem_lite.sam import load_predictor
    from segsem_lite.sam.study import score_candidates
    from segsem_lite.synth.generic import write_generic_dataset

    generic = Dataset(write_generic_dataset(tmp_path / "g", n=12, seed=4242, val_fraction=0.0))
    predictor = load_predictor("mini-foundation", device="cpu")
    assert predictor.calibrated, "its IoU head carries a calibration fitted on generic scenes"
    one_point = score_candidates(predictor, generic, generic.stems)
    fitted = score_candidates(predictor, generic, generic.stems, fit_window=True)
    assert len(one_point) == len(fitted) >= 20
    assert (one_point["area_px"] >= 60).all(), "the generator drops visible parts under 60 px"
    assert one_point["touches_other"].any() and not one_point["touches_other"].all()
    assert one_point["chosen_iou"].mean() > 0.5, one_point["chosen_iou"].mean()
    assert not np.allclose(one_point["score_0"], fitted["score_0"]), "the fitted window is another input"
    assert (one_point["pred_iou"] - one_point["chosen_iou"]).abs().mean() < 0.25


def test_mini_foundation_looks_again_through_a_window_fitted_to_its_first_mask(tmp_path):
    from segsem_lite.dataset import Dataset, mask_bbox_xyxy
    from segsem_lite.sam import load_predictor
    from segsem_lite.sam.forward import window_for
    from segsem_lite.sam.study import score_candidates
    from segsem_lite.synth.generic import write_generic_dataset

    predictor = load_predictor("mini-foundation", device="cpu")
    assert predictor.policy.refine_passes == 1 and load_predictor("mini-sem", device="cpu").policy.refine_passes == 0
    generic = Dataset(write_generic_dataset(tmp_path / "g", n=12, seed=4243, val_fraction=0.0))
    stem = generic.stems[0]
    image, labels = generic.load_image(stem), generic.load_mask(stem)
    t = generic.targets(stem, mask=labels, shape=image.shape)[0]
    pt, one = np.array([t.prompt_xy]), np.array([1])
    predictor.set_image(image)
    first, s1, _ = predictor.predict(pt, one, refine_passes=0)
    assert len(predictor._cache) == 1
    refined, s2, _ = predictor.predict(pt, one)
    fitted = window_for(image.shape, predictor.forward.size, predictor.policy, point_xy=pt[0],
                        region_xyxy=mask_bbox_xyxy(first[int(np.argmax(s1))]))
    assert set(predictor._cache) == {window_for(image.shape, predictor.forward.size, predictor.policy,
                                                point_xy=pt[0]).key, fitted.key}
    predictor.predict(pt, one, region_xyxy=(0, 0, 40, 40))
    assert len(predictor._cache) == 3, "a known region is one pass"
    # the second look is what lifts one-point IoU (small objects are seen magnified)
    both = score_candidates(predictor, generic, generic.stems)
    first_only = score_candidates(predictor, generic, generic.stems, refine_passes=0)
    assert both["chosen_iou"].mean() > first_only["chosen_iou"].mean() + 0.02, \
        (both["chosen_iou"].mean(), first_only["chosen_iou"].mean())
