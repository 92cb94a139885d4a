import numpy as np
import pytest
from PIL import Image

from segsem_lite.errors import SegSEMError
from segsem_lite.sam import load_predictor
from segsem_lite.sam.calibrate import calibrate_model, collect_scores, fit_calibration, isotonic


def test_isotonic_pools_violators():
    assert np.allclose(isotonic(np.array([1.0, 3.0, 2.0, 4.0])), [1.0, 2.5, 2.5, 4.0])
    assert np.allclose(isotonic(np.array([3.0, 1.0]), np.array([3.0, 1.0])), [2.5, 2.5])
    y = np.random.default_rng(0).random(50)
    assert np.all(np.diff(isotonic(y)) >= -1e-12)


def test_fit_removes_a_bias_and_stays_monotone():
    rng = np.random.default_rng(1)
    true = rng.uniform(0.5, 1.0, 2000)
    pred = np.clip(true - 0.08 + rng.normal(0, 0.02, true.size), 0, 1)  # a head low by 0.08
    fit = fit_calibration(pred, true)
    assert fit.mae_before > 0.07 and fit.mae_after < 0.03
    assert np.all(np.diff(fit.x) > 0) and np.all(np.diff(fit.y) >= 0)
    assert abs(fit.apply([0.82])[0] - 0.90) < 0.03
    with pytest.raises(SegSEMError, match="at least 40 candidates"):
        fit_calibration(pred[:10], true[:10])


@pytest.mark.torch
def test_calibrated_checkpoint_maps_the_gate_scores(small_dataset, tmp_path):
    out = tmp_path / "cal.pt"
    fit = calibrate_model("mini-sem", small_dataset, out, split="train", device="cpu", per_bin=10)
    assert fit.n >= 40 and fit.mae_after <= fit.mae_before
    calibrated = load_predictor(str(out), device="cpu")
    assert calibrated.spec.iou_calibration["n"] == fit.n and calibrated.calibrated
    raw, true = collect_scores(calibrated, small_dataset, split="test")
    assert len(raw) == len(true) > 0
    image = np.asarray(Image.open(next((small_dataset / "images").iterdir())))
    calibrated.set_image(image)
    pt = np.array([[image.shape[1] / 2, image.shape[0] / 2]])
    _, mapped, _ = calibrated.predict(pt, np.array([1]))
    calibrated.calibrated = False
    _, plain, _ = calibrated.predict(pt, np.array([1]))
    assert np.allclose(mapped, fit.apply(plain), atol=1e-5)
    assert np.array_equal(np.argsort(-mapped, kind="stable"), np.argsort(-fit.apply(plain), kind="stable"))
