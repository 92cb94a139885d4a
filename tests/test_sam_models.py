import subprocess
import sys

import numpy as np
import pytest
import torch

from segsem_lite import SegSEMError
from segsem_lite.sam import load_model, load_predictor, mini_spec, module_parameter_counts
from segsem_lite.sam.devices import resolve_device
from segsem_lite.sam.models import build_model, load_model_file, official_spec, save_checkpoint


@pytest.fixture(scope="module")
def mini():
    torch.manual_seed(0)
    spec = mini_spec("test-mini")
    return build_model(spec), spec


def test_classical_path_imports_without_torch():
    code = "import sys, segsem_lite; segsem_lite.segment_target; print('torch' in sys.modules, 'sam2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_mini_model_is_a_real_sam2(mini):
    model, spec = mini
    from sam2.modeling.sam2_base import SAM2Base

    assert isinstance(model, SAM2Base) and model.image_size == spec.image_size == 256
    counts = module_parameter_counts(model)
    assert counts["image_encoder"]["total"] > 1_000_000 and counts["sam_mask_decoder"]["total"] > 1_000_000
    assert 3_000_000 < sum(c["total"] for c in counts.values()) < 4_000_000


def test_project_checkpoint_carries_its_config(mini, tmp_path):
    model, spec = mini
    path = save_checkpoint(tmp_path / "m.pt", model, spec)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "segsem"}
    loaded, spec2 = load_model_file(path)
    assert spec2 == spec
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_meta_checkpoint_needs_its_config_name(mini, tmp_path):
    model, _ = mini
    torch.save({"model": model.state_dict()}, tmp_path / "meta.pt")
    with pytest.raises(SegSEMError, match="carries no configuration; pass its config name"):
        load_model_file(tmp_path / "meta.pt")


def test_checkpoint_that_does_not_fit_names_both_and_the_first_key(mini, tmp_path):
    model, _ = mini
    path = tmp_path / "small.pt"
    torch.save({"model": model.state_dict()}, path)
    with pytest.raises(SegSEMError) as info:
        load_model("sam2.1_hiera_t", checkpoint=str(path))
    msg = str(info.value)
    assert str(path) in msg and "sam2.1_hiera_t" in msg and "first mismatched key" in msg
    assert "\n" not in msg and len(msg) < 400


def test_official_config_with_random_weights_in_metas_format(tmp_path):
    torch.manual_seed(1)
    spec = official_spec("sam2.1_hiera_t")
    model = build_model(spec)
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    pred = load_predictor("sam2.1_hiera_t", checkpoint=str(path), device="cpu")
    assert pred.model.image_size == 1024 and pred.policy.mode == "whole"
    image = (np.random.default_rng(0).random((96, 128)) * 255).astype(np.uint8)
    pred.set_image(image)
    masks, scores, low = pred.predict(np.array([[40.0, 30.0]]), np.array([1]))
    assert masks.shape == (3, 96, 128) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, 256, 256)


@pytest.mark.parametrize("name, message", [
    ("sam2.1_hiera_t", "needs --checkpoint"),
    ("mini-nothing", "expected one of"),
    ("missing.pt", "no such checkpoint file"),
])
def test_bad_model_names(name, message):
    with pytest.raises(SegSEMError, match=message):
        load_model(name)


def test_default_names_the_shipped_sem_model_for_every_command():
    from segsem_lite.sam.models import resolve_spec

    assert resolve_spec("default") == resolve_spec("mini-sem")  # segsem finetune --model default, as extract's


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "npu", "mps")
    with pytest.raises(SegSEMError, match="expected one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SegSEMError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(SegSEMError, match="no Ascend NPU"):
        resolve_device("npu")


def test_half_precision_weights_load_into_the_float_model(mini, tmp_path):
    model, spec = mini
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    import json

    torch.save({"model": half, "segsem": json.dumps(spec.to_dict())}, tmp_path / "h.pt")
    loaded, _ = load_model_file(tmp_path / "h.pt")
    p = dict(loaded.named_parameters())
    assert all(v.dtype == torch.float32 for v in p.values())
    k = "image_encoder.trunk.patch_embed.proj.weight"
    assert torch.allclose(p[k], dict(model.named_parameters())[k], atol=1e-3)


def test_ship_writes_the_card_and_the_input_policy(mini, tmp_path, monkeypatch):
    import json

    from segsem_lite.sam import ship as ship_mod

    model, spec = mini
    save_checkpoint(tmp_path / "run.pt", model, spec, step=7)
    (tmp_path / "card.json").write_text(json.dumps({"data": "some scenes", "wall_time_min_2_cores": 1.5}))
    target = tmp_path / "shipped.pt"
    monkeypatch.setitem(ship_mod.BUILTIN_MODELS, "mini-foundation", target)  # never overwrite the real one
    monkeypatch.setattr(sys, "argv", ["ship", str(tmp_path / "run.pt"), "mini-foundation", "--refine-passes", "1",
                                      "--meta", f"@{tmp_path / 'card.json'}"])
    ship_mod.main()
    _, shipped = load_model_file(target)
    assert shipped.name == "mini-foundation" and shipped.input.refine_passes == 1
    assert shipped.input.mode == spec.input.mode and shipped.metadata["data"] == "some scenes"
    state = torch.load(target, map_location="cpu", weights_only=True)["model"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}


def test_deepened_trunk_computes_the_same_and_trains(mini, tmp_path):
    from segsem_lite.sam import SAM2Predictor
    from segsem_lite.sam.grow import deepen_trunk

    model, spec = mini
    grown, gspec = deepen_trunk(model, spec, [1, 2, 4, 1], [4])
    assert len(grown.image_encoder.trunk.blocks) == 8 and 4 in grown.image_encoder.trunk.global_att_blocks
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(grown) > n(model) + 200_000
    image = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    out = []
    for m, s in ((model, spec), (grown, gspec)):
        p = SAM2Predictor(m, s)
        p.set_image(image)
        out.append(p.predict(np.array([[100, 120]]), np.array([1]), return_logits=True))
    np.testing.assert_allclose(out[0][0], out[1][0], atol=1e-4)
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-5)
    # the added blocks start as identities but are not frozen: one gradient reaches them
    feats = grown.forward_image(torch.from_numpy(image).float().expand(1, 3, -1, -1) / 255)
    feats["vision_features"].square().mean().backward()
    assert grown.image_encoder.trunk.blocks[2].attn.proj.weight.grad.abs().sum() > 0
    save_checkpoint(tmp_path / "g.pt", grown, gspec)
    loaded, lspec = load_model_file(tmp_path / "g.pt")
    assert "++model.image_encoder.trunk.stages=[1,2,4,1]" in lspec.overrides
    # the added blocks' initial weights come from the seed: the same call grows the same model
    again, _ = deepen_trunk(model, spec, [1, 2, 4, 1], [4], check=False)
    other, _ = deepen_trunk(model, spec, [1, 2, 4, 1], [4], seed=1, check=False)
    qkv = lambda m: m.image_encoder.trunk.blocks[2].attn.qkv.weight  # noqa: E731
    assert torch.equal(qkv(loaded), qkv(again)) and not torch.equal(qkv(again), qkv(other))


@pytest.mark.parametrize("stages, blocks, message", [
    ([1, 1, 1, 1], [3], "at least the 1,1,2,1 blocks"),
    ([1, 2, 4, 1], [3], "trained block 2 becomes block 3"),
])
def test_deepening_refuses_to_lose_or_change_trained_blocks(mini, stages, blocks, message):
    from segsem_lite.sam.grow import deepen_trunk

    model, spec = mini
    with pytest.raises(SegSEMError, match=message):
        deepen_trunk(model, spec, stages, blocks)
