import json
import shutil

import numpy as np
import pandas as pd
import pytest

from segsem_lite import SegSEMError
from segsem_lite.dataset import (
    Dataset,
    check_dataset,
    design_from_polygons,
    interior_point,
    read_image,
    read_mask,
    write_image,
    write_mask,
)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_image_round_trip(tmp_path, suffix, dtype):
    img = (np.arange(12 * 10).reshape(12, 10) * 37 % np.iinfo(dtype).max).astype(dtype)
    back = read_image(write_image(tmp_path / f"a{suffix}", img))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, img)


def test_rgb_is_converted_with_a_warning(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200
    write_image(tmp_path / "c.png", rgb)
    with pytest.warns(UserWarning, match="colour image converted"):
        g = read_image(tmp_path / "c.png")
    assert g.shape == (4, 5) and g[0, 0] == round(0.587 * 200)


def test_truncated_and_missing_images_raise_one_clear_line(tmp_path):
    p = write_image(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(SegSEMError, match=r"t\.png: unreadable image") as info:
        read_image(p)
    assert "\n" not in str(info.value)
    with pytest.raises(SegSEMError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_binary_mask_becomes_instances(tmp_path):
    m = np.zeros((10, 10), np.uint8)
    m[1:3, 1:3] = 255
    m[6:9, 6:9] = 255
    labels = read_mask(write_image(tmp_path / "m.png", m))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]


def test_label_mask_kept_16_bit(tmp_path):
    m = np.zeros((10, 10), np.int32)
    m[2:4, 2:4] = 300
    back = read_mask(write_mask(tmp_path / "m.png", m))
    assert back[3, 3] == 300


def test_interior_point_and_design():
    m = np.zeros((10, 20), bool)
    m[2:7, 3:18] = True
    x, y = interior_point(m)
    assert y == 4 and 3 < x < 17
    d = design_from_polygons([[[0, 0], [10, 0], [10, 4], [0, 4]]])
    assert d.area_px == 40 and d.aspect == 2.5 and d.bbox_xyxy() == (0, 0, 10, 4)


def _make(tmp_path, n=2, **meta_cols):
    root = tmp_path / "ds"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rows = []
    for i in range(n):
        img = np.full((32, 32), 50, np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 1
        mask[0:4, 25:32] = 2  # touches the border: not a target
        img[mask > 0] = 150
        write_image(root / "images" / f"s{i}.png", img)
        write_mask(root / "masks" / f"s{i}.png", mask)
        rows.append({"stem": f"s{i}", "exposure_case": 1, "pixel_size_nm": 1.0, "split": "train",
                     **{k: v[i] if isinstance(v, list) else v for k, v in meta_cols.items()}})
    pd.DataFrame(rows).to_csv(root / "meta.csv", index=False)
    return root


def test_targets_default_rule_skips_border_features(tmp_path):
    ds = Dataset(_make(tmp_path))
    (t,) = ds.targets("s0")
    assert t.label == 1 and t.pixel_size_nm == 1.0 and t.exposure_case == "1" and t.split == "train"
    assert 8 <= t.prompt_xy[0] < 20 and 8 <= t.prompt_xy[1] < 20


def test_targets_from_meta_and_layout(tmp_path):
    root = _make(tmp_path, target_label=2, prompt_x=28, prompt_y=1)
    (root / "layout").mkdir()
    (root / "layout" / "s0.json").write_text(json.dumps({"features": {"2": [[[25, 0], [31, 0], [31, 3], [25, 3]]]}}))
    ds = Dataset(root)
    (t,) = ds.targets("s0")
    assert t.label == 2 and t.prompt_xy == (28.0, 1.0)
    assert t.design.area_px == 18 and t.design.aspect == 2.0
    assert ds.targets("s1")[0].design.area_px is None


def test_inference_only_targets_come_from_layout(tmp_path):
    root = _make(tmp_path)
    shutil.rmtree(root / "masks")
    (root / "layout").mkdir()
    (root / "layout" / "s0.json").write_text(json.dumps({"features": {"1": [[[8, 8], [19, 8], [19, 19], [8, 19]]]}}))
    ds = Dataset(root)
    assert not ds.has_masks and ds.load_mask("s0") is None
    (t,) = ds.targets("s0", shape=(32, 32))
    assert t.label == 1 and 8 <= t.prompt_xy[0] <= 19 and 8 <= t.prompt_xy[1] <= 19 and not t.touches_border
    # a feature cut by the right border: flagged, prompted inside what the image shows of it
    (root / "layout" / "s0.json").write_text(json.dumps({"features": {"2": [[[20, 4], [40, 4], [40, 28], [20, 28]]]}}))
    (t,) = Dataset(root).targets("s0", shape=(32, 32))
    assert t.label == 2 and t.touches_border and 20 <= t.prompt_xy[0] <= 31 and 4 <= t.prompt_xy[1] <= 28


def test_check_passes_and_summarises(small_dataset):
    report = check_dataset(small_dataset)
    assert report.ok, report.problems
    s = report.summary
    assert s["images"] == 20 and s["targets"] > 20
    assert s["exposure_cases"] == {str(c): 2 for c in range(1, 11)}
    assert s["splits"] == {"train": 10, "test": 10}
    assert "8-bit: 20" in report.format_summary()


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", r"images/s0\.png: unreadable image"),
        ("mask_shape", r"masks/s0\.png: mask shape 16x16 differs from its image 32x32"),
        ("prompt_outside_image", r"stem s0: prompt \(x=40, y=5\) is outside the image of 32x32 px"),
        ("prompt_outside_target", r"stem s0: prompt \(x=2, y=2\) is outside target 1"),
        ("label_missing", r"stem s0: target_label 7 is not in the mask"),
        ("duplicate", r"images/s0\.tif: duplicate stem 's0'"),
        ("no_mask", r"images/s1\.png: no mask masks/s1"),
        ("meta_missing_image", r"meta\.csv: row for stem 'ghost' but no image"),
        ("empty", r"empty dataset"),
    ],
)
def test_check_names_each_problem(tmp_path, damage, expected):
    meta = {}
    if damage == "prompt_outside_image":
        meta = dict(target_label=1, prompt_x=40, prompt_y=5)
    elif damage == "prompt_outside_target":
        meta = dict(target_label=1, prompt_x=2, prompt_y=2)
    elif damage == "label_missing":
        meta = dict(target_label=7)
    root = _make(tmp_path, **meta)
    if damage == "truncate":
        p = root / "images" / "s0.png"
        p.write_bytes(p.read_bytes()[:60])
    elif damage == "mask_shape":
        write_mask(root / "masks" / "s0.png", np.ones((16, 16), np.uint8))
    elif damage == "duplicate":
        write_image(root / "images" / "s0.tif", np.zeros((32, 32), np.uint8))
    elif damage == "no_mask":
        (root / "masks" / "s1.png").unlink()
    elif damage == "meta_missing_image":
        df = pd.read_csv(root / "meta.csv")
        pd.concat([df, pd.DataFrame([{"stem": "ghost"}])]).to_csv(root / "meta.csv", index=False)
    elif damage == "empty":
        for p in (root / "images").iterdir():
            p.unlink()
        for p in (root / "masks").iterdir():
            p.unlink()
        (root / "meta.csv").unlink()
    report = check_dataset(root)
    assert not report.ok
    assert any(__import__("re").search(expected, line) for line in report.problems), report.problems
    assert all("\n" not in line for line in report.problems)


def test_missing_folder_is_one_problem(tmp_path):
    report = check_dataset(tmp_path / "nope")
    assert report.problems == [f"{tmp_path / 'nope'}: no such dataset folder or image file"]


def test_bad_meta_number_names_the_row(tmp_path):
    root = _make(tmp_path, pixel_size_nm=["1.0", "fast"])
    with pytest.raises(SegSEMError, match="stem s1: pixel_size_nm='fast' is not a number"):
        Dataset(root)


def test_written_files_have_ordinary_permissions(tmp_path):
    import os

    p = write_image(tmp_path / "p.png", np.zeros((4, 4), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
