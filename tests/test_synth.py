import numpy as np
import pytest

from segsem_lite.dataset import check_dataset
from segsem_lite.metrics import average_exposure
from segsem_lite.synth import EXPOSURE_CASES, LAYOUT_KINDS, exposure_case, make_sample
from segsem_lite.synth.layout import make_layout, rasterize_features
from segsem_lite.synth.lithography import print_pattern


def test_deterministic_for_a_seed():
    a = make_sample(4, 123, size=128)
    b = make_sample(4, 123, size=128)
    c = make_sample(4, 124, size=128)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.instances, b.instances)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("kind", LAYOUT_KINDS)
def test_every_kind_prints_features_inside_the_field(kind):
    s = make_sample(1, 5, size=256, kind=kind)
    labels = set(np.unique(s.instances)) - {0}
    assert labels and labels <= {f.label for f in s.clip.features}
    assert s.image.dtype == np.uint8 and s.image.shape == (256, 256)
    assert s.clip.tone == ("hole" if kind == "contacts" else "line")


def test_rasterize_exact_coverage():
    from segsem_lite.synth.layout import Feature, LayoutClip

    clip = LayoutClip("x", "line", (Feature(1, ((1.5, 0.0, 3.0, 2.0),)),), 4.0)
    cov, labels = rasterize_features(clip, (4, 4), 1.0)
    np.testing.assert_allclose(cov[0], [0, 0.5, 1, 0])
    assert labels[0].tolist() == [0, 1, 1, 0] and cov[2:].sum() == 0


def test_cd_moves_with_dose():
    clip = make_layout("iso_line", np.random.default_rng(0), 256.0)
    cov, _ = rasterize_features(clip, (256, 256), 1.0)
    from segsem_lite.synth.lithography import aerial_image

    aerial = aerial_image(cov, blur_nm=9, defocus_nm=0, pixel_size_nm=1.0)
    areas = [print_pattern(aerial, tone="line", dose=d, ler_nm=0, blur_nm=9, pixel_size_nm=1.0,
                           rng=np.random.default_rng(0)).sum() for d in (0.9, 1.0, 1.1)]
    assert areas[0] > areas[1] > areas[2]  # more dose, thinner resist lines
    holes = [print_pattern(aerial, tone="hole", dose=d, ler_nm=0, blur_nm=9, pixel_size_nm=1.0,
                           rng=np.random.default_rng(0)).sum() for d in (0.9, 1.1)]
    assert holes[0] < holes[1]  # more dose, larger openings


def test_cases_get_harder():
    assert [c.case for c in EXPOSURE_CASES] == list(range(1, 11))
    assert EXPOSURE_CASES[0].frames > EXPOSURE_CASES[-1].frames
    assert EXPOSURE_CASES[0].material_contrast > EXPOSURE_CASES[-1].material_contrast
    noise = [average_exposure(make_sample(c, 9, size=128, kind="iso_line").image) for c in (1, 10)]
    assert noise[1] > 3 * noise[0]
    with pytest.raises(ValueError, match="exposure case"):
        exposure_case(11)


def test_edge_effect_brightens_edges():
    s = make_sample(1, 2, size=256, kind="iso_line")
    from scipy import ndimage as ndi

    fg = s.instances > 0
    edge = fg & ~ndi.binary_erosion(fg, iterations=2)
    inside = ndi.binary_erosion(fg, iterations=8)
    assert s.image[edge].mean() > s.image[inside].mean() + 20


def test_sixteen_bit(tmp_path):
    s = make_sample(2, 1, size=64, bit_depth=16)
    assert s.image.dtype == np.uint16 and s.image.max() > 255


def test_written_dataset_is_valid(small_dataset):
    report = check_dataset(small_dataset)
    assert report.ok and report.summary["pixel_size_nm"] != "-"


def _touching_contrasts(image, labels):
    """Per labelled object: the smallest median-level gap to any region within 2 px of it (0-1 scale)."""
    from scipy import ndimage as ndi

    smooth = ndi.median_filter(image.astype(float), 3) / 255
    gaps = []
    for k in range(1, labels.max() + 1):
        obj = labels == k
        ring = ndi.binary_dilation(obj, iterations=2) & ~obj
        inner = obj & ~ndi.binary_erosion(obj, iterations=2)
        near = [abs(np.median(smooth[ring & (labels == r)]) - np.median(smooth[inner]))
                for r in np.unique(labels[ring]) if (ring & (labels == r)).sum() >= 20]
        gaps.append(min(near) if near else 1.0)
    return np.array(gaps)


def test_generic_scenes_v2_every_object_is_one_visible_region():
    from scipy import ndimage as ndi

    from segsem_lite.synth.generic import make_generic

    gaps = {1: [], 2: []}
    for i in range(40):
        for version in (1, 2):
            image, labels = make_generic([5, i], version=version)
            gaps[version].extend(_touching_contrasts(image, labels))
            if version == 2:
                for k in range(1, labels.max() + 1):
                    assert ndi.label(labels == k)[1] == 1
    low = {v: float(np.mean(np.array(g) < 0.05)) for v, g in gaps.items()}
    # version 1 lets a fill match a neighbour it touches; version 2 keeps every touching region apart
    assert low[2] < 0.02 < low[1]


def test_generic_scene_versions():
    from segsem_lite.synth.generic import make_generic

    a1, l1 = make_generic([3, 0], version=1)
    b1, m1 = make_generic([3, 0], version=1)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(l1, m1)
    assert make_generic([3, 0])[0].shape == (256, 256)
    with pytest.raises(ValueError, match="version 3"):
        make_generic([3, 0], version=3)


def test_wide_generator_draws_both_tones_and_contrast_signs_and_is_reproducible():
    from segsem_lite.synth.wide import make_wide_sample

    a, b = make_wide_sample(5, size=96), make_wide_sample(5, size=96)
    np.testing.assert_array_equal(a.image, b.image)
    draws = [make_wide_sample(np.random.SeedSequence([2, i]), size=128) for i in range(24)]
    kinds_tones = {(d.clip.kind, d.clip.tone) for d in draws}
    assert {"line", "hole"} <= {t for _, t in kinds_tones}
    assert ("contacts", "line") in kinds_tones or any(k != "contacts" and t == "hole" for k, t in kinds_tones)
    contrasts = [d.appearance["case"].material_contrast for d in draws]
    assert min(contrasts) < 0 < max(contrasts)
    for d in draws:
        c = d.appearance["case"]
        feat = d.instances > 0
        if c.edge_gain == 0 and abs(c.material_contrast) > 0.08 and feat.any() and (~feat).any():
            # without the edge effect the resist is brighter or darker as the drawn contrast says
            resist = feat if d.clip.tone == "line" else ~feat
            img = d.image.astype(float)
            assert np.sign(img[resist].mean() - img[~resist].mean()) == np.sign(c.material_contrast)


def test_detector_lag_trails_each_edge_along_the_scan_only():
    from segsem_lite.synth.wide import detector_lag

    step = np.zeros((4, 60))
    step[:, 30:] = 1.0
    lagged = detector_lag(step, weight=0.5, length_px=5.0)
    np.testing.assert_allclose(lagged[:, :30], 0.0, atol=1e-12)  # nothing before the edge: the lag is causal
    assert (lagged[:, 30:35] < 1.0).all() and abs(lagged[0, -1] - 1.0) < 5e-3  # it trails, then settles


def test_wide_hard_conditions_are_filed_by_their_hardest_factor(tmp_path):
    import pandas as pd

    from segsem_lite.synth.wide import CONDITIONS, HARD_RANGES, wide_condition, write_wide_dataset

    assert wide_condition(-0.05, 32, 0.5, 0.0, 0) == "inverted"
    assert wide_condition(0.01, 2, 0.0, 0.3, 50) == "no contrast"
    assert wide_condition(0.2, 2, 0.0, 0.0, 0) == "2 frames"
    assert wide_condition(0.2, 8, 0.0, 0.3, 0) == "no edge effect"
    assert wide_condition(0.2, 8, 0.5, 0.0, 0) == "other"
    out = write_wide_dataset(tmp_path / "hard", n=6, seed=3, size=96, ranges=HARD_RANGES, by_condition=True)
    meta = pd.read_csv(out / "meta.csv")
    assert (meta["exposure_case"] == meta["condition"]).all() and meta["condition"].isin(CONDITIONS).all()
    assert meta["frames"].isin(HARD_RANGES.frames).all() and (meta["material_contrast"] <= 0.08).all()
    assert meta["litho_case"].between(1, 10).all()


def test_feature_cnr_ranks_visibility_and_min_cnr_redraws_invisible_images(tmp_path):
    import pandas as pd

    from segsem_lite.synth.wide import HARD_RANGES, feature_cnr, write_wide_dataset

    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), np.uint8)
    truth[16:48, 20:44] = 1
    faint, strong = (rng.normal(0, 1.0, truth.shape) + c * truth for c in (0.2, 3.0))
    assert feature_cnr(faint, truth) < 0.6 < 2.0 < feature_cnr(strong, truth)
    assert np.isnan(feature_cnr(strong, np.zeros_like(truth)))
    out = write_wide_dataset(tmp_path / "vis", n=8, seed=11, size=96, ranges=HARD_RANGES, min_cnr=1.0)
    assert (pd.read_csv(out / "meta.csv")["cnr"] >= 1.0).all()
