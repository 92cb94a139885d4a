import numpy as np
import pytest
import torch

from segsem_lite import Dataset, SegSEMError, segment_image
from segsem_lite.sam import InputPolicy, SAM2Predictor, mini_spec
from segsem_lite.sam.forward import Window, normalise, window_for
from segsem_lite.sam.models import build_model, clone_spec


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    spec = mini_spec("test-mini")
    return SAM2Predictor(build_model(spec), spec, device="cpu")


def test_normalise_16_bit_like_8_bit():
    img8 = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    a = normalise(img8, 64)
    b = normalise(img8.astype(np.uint16) * 257, 64)
    assert a.shape == (3, 64, 64) and torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[0] * 0.229 + 0.485, torch.from_numpy(img8 / 255.0).float(), atol=1e-5)


def test_window_maps_points_and_pastes_back():
    win = Window(10, 20, 64, 256)
    assert np.allclose(win.to_input([[10, 20]]), [[2.0, 2.0]])  # pixel centre (10, 20) -> (0.5 * 4)
    vals = np.ones((1, 64, 64), np.float32)
    out = win.paste(vals, (50, 50), fill=-1.0)
    assert out[0, 20:50, 10:50].min() == 1.0 and out[0, :20].max() == -1.0
    img = np.arange(100).reshape(10, 10)
    assert Window(-2, -2, 6, 6).crop(img).shape == (6, 6)
    w = window_for((512, 512), 256, InputPolicy(mode="window", context=2.0), region_xyxy=(100, 100, 140, 160))
    assert w.side == 120 and (w.x0, w.y0) == (60, 70)


def test_predict_full_resolution_candidates(predictor):
    image = (np.random.default_rng(1).random((200, 180)) * 255).astype(np.uint8)
    predictor.set_image(image)
    masks, scores, low = predictor.predict(np.array([[90.0, 100.0]]), np.array([1]), region_xyxy=(70, 80, 110, 120))
    assert masks.shape == (3, 200, 180) and masks.dtype == bool
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert low.shape == (3, 64, 64)
    logits, _, _ = predictor.predict(np.array([[90.0, 100.0]]), np.array([1]), return_logits=True)
    assert logits.dtype == np.float32 and np.array_equal(logits > 0, predictor.predict(
        np.array([[90.0, 100.0]]), np.array([1]))[0])
    with pytest.raises(SegSEMError, match=r"prompt \(x=500, y=1\) is outside the image of 180x200 px"):
        predictor.predict(np.array([[500.0, 1.0]]), np.array([1]))


def test_whole_policy_encodes_once_per_image(predictor, monkeypatch):
    spec = clone_spec(predictor.spec, input={"mode": "whole"})
    whole = SAM2Predictor(predictor.model, spec, device="cpu")
    calls = []
    original = whole.forward.encode
    monkeypatch.setattr(whole.forward, "encode", lambda x: calls.append(x.shape) or original(x))
    ds = Dataset(__import__("segsem_lite").sample_dataset())
    stem = ds.stems[0]
    targets = ds.targets(stem)
    out = segment_image(ds.load_image(stem), targets, model=whole)
    assert len(calls) == 1 and len(out) == len(targets) > 1
    assert all(len(r.candidate_scores) == 3 for r in out)


def test_real_model_in_the_pipeline(predictor, small_dataset):
    ds = Dataset(small_dataset)
    stem = ds.split("test")[0]
    out = segment_image(ds.load_image(stem), ds.targets(stem), model=predictor)
    for r in out:
        assert r.source in ("sam2", "fallback")
        assert r.decision is not None and len(r.decision.checks) == 3
        assert r.mask.any()


def test_batched_encoding_matches_one_by_one(predictor):
    spec = clone_spec(predictor.spec, input={"mode": "whole"})
    whole = SAM2Predictor(predictor.model, spec, device="cpu")
    rng = np.random.default_rng(2)
    images = [(rng.random((128, 128)) * 255).astype(np.uint8) for _ in range(3)]
    whole.set_image_batch(images)
    batched = []
    for i in range(3):
        whole.use_image(i)
        batched.append(whole.predict(np.array([[60.0, 64.0]]), np.array([1]), return_logits=True)[0])
    for i, im in enumerate(images):
        whole.set_image(im)
        single = whole.predict(np.array([[60.0, 64.0]]), np.array([1]), return_logits=True)[0]
        np.testing.assert_allclose(batched[i], single, atol=1e-3)
    with pytest.raises(SegSEMError, match="batched encoding needs the 'whole' input policy"):
        predictor.set_image_batch(images)


def test_refine_passes_must_be_a_count():
    with pytest.raises(SegSEMError, match="refine_passes -1: expected a whole number >= 0"):
        InputPolicy(mode="window", refine_passes=-1)
