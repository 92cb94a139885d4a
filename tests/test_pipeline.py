import numpy as np
import pytest

from segsem_lite import (
    Dataset,
    Design,
    GateConfig,
    PipelineConfig,
    SegSEMError,
    mask_scores,
    segment_image,
    segment_target,
)
from segsem_lite.pipeline import MaskSource
from segsem_lite.synth import make_sample


class CandidateTable:
    """A MaskSource whose candidates are given up front: tests the gate wiring, not a model."""

    name = "table"

    def __init__(self, masks, scores):
        self.masks, self.scores, self.images = np.asarray(masks), np.asarray(scores, float), 0

    def set_image(self, image):
        self.images += 1

    def predict(self, point_coords, point_labels, box=None, multimask_output=True, region_xyxy=None):
        return self.masks, self.scores, np.zeros((len(self.scores), 4, 4))


@pytest.fixture(scope="module")
def sample():
    return make_sample(2, 31, size=256, kind="iso_line")


def _target(sample):
    from segsem_lite.dataset import interior_point

    label = int(np.unique(sample.instances)[1])
    return label, interior_point(sample.instances == label)


def test_standard_pipeline_segments_a_feature(sample):
    label, prompt = _target(sample)
    r = segment_target(sample.image, prompt, pixel_size_nm=sample.pixel_size_nm)
    assert r.source == "standard" and r.decision is None
    assert mask_scores(r.mask, sample.instances == label).iou > 0.6
    assert r.contours and set(r.timings_ms) == {"fallback", "refine", "contours"}
    assert r.edges.sum() > 0 and not (r.edges & ~r.mask).any()


def test_model_candidate_accepted_or_fallback(sample):
    label, prompt = _target(sample)
    truth = sample.instances == label
    assert isinstance(CandidateTable([truth], [0.95]), MaskSource)
    fragments = truth.copy()
    fragments[2:10, 2:10] = True  # a spurious fragment of 64 px
    accepted = segment_target(sample.image, prompt, model=CandidateTable([truth, fragments], [0.95, 0.99]))
    assert accepted.source == "sam2" and accepted.decision.accepted_index == 0
    assert accepted.decision.checks[1].failed == ("topology",)
    assert mask_scores(accepted.mask, truth).iou > 0.99
    assert set(accepted.timings_ms) >= {"encode", "predict", "gate", "refine", "contours"}
    rejected = segment_target(sample.image, prompt, model=CandidateTable([truth], [0.5]))
    assert rejected.source == "fallback" and "confidence" in rejected.gate_reasons
    strict = PipelineConfig(gate=GateConfig(tau_conf=0.0, area_tolerance=0.05))
    geo = segment_target(sample.image, prompt, model=CandidateTable([truth], [0.99]),
                         design=Design(area_px=truth.sum() * 2.0), config=strict)
    assert geo.source == "fallback" and geo.decision.failed_checks == ("geometry",)


def test_segment_image_encodes_once_and_isolates_bad_targets(sample):
    from segsem_lite.dataset import Target

    label, prompt = _target(sample)
    table = CandidateTable([sample.instances == label], [0.97])
    targets = [Target("s", label, prompt), Target("s", 99, (1e4, 5.0)), Target("s", label, prompt)]
    out = segment_image(sample.image, targets, model=table)
    assert table.images == 1
    assert isinstance(out[1], SegSEMError) and "outside the image" in str(out[1])
    assert out[0].source == out[2].source == "sam2"


@pytest.mark.parametrize("kind", ["black", "white", "noise", "sixteen"])
def test_degenerate_images_give_a_result_or_a_clear_error(kind):
    rng = np.random.default_rng(0)
    img = {"black": np.zeros((64, 64), np.uint8), "white": np.full((64, 64), 255, np.uint8),
           "noise": rng.integers(0, 256, (64, 64), dtype=np.uint8),
           "sixteen": (rng.integers(0, 65536, (64, 64))).astype(np.uint16)}[kind]
    try:
        r = segment_target(img, (32.0, 32.0))
        assert r.mask[32, 32] or r.mask.any()
    except SegSEMError as exc:
        assert "no feature found" in str(exc)


def test_sixteen_bit_matches_eight_bit(sample):
    label, prompt = _target(sample)
    r8 = segment_target(sample.image, prompt)
    r16 = segment_target(sample.image.astype(np.uint16) * 257, prompt)
    np.testing.assert_array_equal(r8.mask, r16.mask)


def test_tiny_and_large_images():
    with pytest.raises(SegSEMError, match="1x1 px: too small"):
        segment_target(np.zeros((1, 1), np.uint8), (0.0, 0.0))
    big = np.full((4096, 4096), 40, np.uint8)
    big[2000:2100, 1000:3000] = 200
    big[2003:2097, 1003:2997] = 90
    r = segment_target(big, (2000.0, 2050.0))
    assert r.mask[2050, 2000] and 150_000 < r.mask.sum() < 200_000


@pytest.mark.parametrize("flat", [False, True])
def test_prompt_on_background_is_a_clear_error(sample, flat):
    img = np.full((64, 64), 100, np.uint8) if flat else sample.image
    with pytest.raises(SegSEMError, match=r"prompt \(x=5, y=5\): no feature found"):
        segment_target(img, (5.0, 5.0))


def test_design_mismatch_sends_to_fallback_not_crash(sample):
    label, prompt = _target(sample)
    truth = sample.instances == label
    r = segment_target(sample.image, prompt, model=CandidateTable([truth], [0.99]),
                       design=Design(area_px=10.0, aspect=9.0))
    assert r.source == "fallback" and "geometry" in r.gate_reasons


def test_dataset_targets_run_end_to_end(small_dataset):
    ds = Dataset(small_dataset)
    stem = ds.split("test")[0]
    mask = ds.load_mask(stem)
    out = segment_image(ds.load_image(stem), ds.targets(stem, mask=mask))
    assert out and all(not isinstance(r, Exception) for r in out)
    assert np.mean([mask_scores(r.mask, mask == r.label).iou for r in out]) > 0.5


def test_a_t_shape_is_not_segmented_at_its_bounding_box_scale():
    """A T's design box is 80 px, its arms 9 px wide: at the box's scale the fallback blurs the arms into a blob
    twice the design's area; the image's own scale is asked then, and the region nearer the design wins."""
    from scipy import ndimage as ndi
    from skimage.draw import polygon as draw_polygon

    from segsem_lite.dataset import Target, design_from_polygons
    from segsem_lite.metrics import iou
    from segsem_lite.pipeline import segment_image

    tee = np.array([[23.5, 149.3], [103.5, 149.3], [103.5, 158.1], [67.9, 158.1], [67.9, 233.7], [59.1, 233.7],
                    [59.1, 158.1], [23.5, 158.1]])
    truth = np.zeros((256, 256), bool)
    truth[draw_polygon(tee[:, 1], tee[:, 0], truth.shape)] = True
    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(0.35 + 0.17 * truth, 1.2) + rng.normal(0, 0.03, truth.shape)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    design = design_from_polygons([tee])
    res = segment_image(image, [Target(stem="t", label=1, prompt_xy=(78.0, 154.0), design=design)], model=None)[0]
    assert 1 / 1.5 < res.mask.sum() / design.area_px < 1.5
    assert iou(res.mask, truth) > 0.65  # 0.47 at the box's scale


def test_a_designed_neighbour_bridged_in_print_stays_out_of_a_target():
    """Two designed squares 8 px apart, printed with a bridge between them: the fallback finds one region for
    both, and each target keeps only the pixels nearer its own design (its territory)."""
    from scipy import ndimage as ndi

    from segsem_lite.dataset import Target, design_from_polygons
    from segsem_lite.metrics import iou
    from segsem_lite.pipeline import segment_image, territories

    squares = [np.array([[x0, 40.0], [x0 + 15, 40.0], [x0 + 15, 55.0], [x0, 55.0]]) for x0 in (30.0, 53.0)]
    truth = np.zeros((96, 128), np.int32)
    for i, s in enumerate(squares):
        truth[40:56, int(s[0, 0]):int(s[0, 0]) + 16] = i + 1
    printed = (truth > 0) | (np.arange(128)[None, :] >= 40) & (np.arange(128)[None, :] < 70) & \
        (np.arange(96)[:, None] >= 45) & (np.arange(96)[:, None] < 50)
    rng = np.random.default_rng(1)
    image = ndi.gaussian_filter(0.3 + 0.3 * printed, 1.0) + rng.normal(0, 0.02, printed.shape)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    targets = [Target(stem="b", label=i + 1, prompt_xy=(s[:, 0].mean(), 47.5), design=design_from_polygons([s]))
               for i, s in enumerate(squares)]
    lands, seeds = territories(targets, image.shape)
    assert lands.shape == image.shape and set(np.unique(lands)) == {1, 2}
    assert (lands[:, :49] == 1).all() and (lands[:, 50:] == 2).all()  # the squares' midline is x 49
    assert (seeds == lands).all()  # with a design, every pixel is its nearest design's
    alone = segment_image(image, targets[:1])[0]  # one target: no territory, the bridge joins the neighbour
    assert alone.mask[:, 53:].sum() > 100
    for res in segment_image(image, targets):
        own = truth == res.label
        assert not (res.mask & (lands != res.label)).any()
        assert iou(res.mask, own) > 0.75
    assert territories(targets[:1], image.shape) is None
    # without a design, the prompts tell the two apart: each region that takes in the other's prompt is cut
    points = [Target(stem="b", label=t.label, prompt_xy=t.prompt_xy) for t in targets]
    lands, seeds = territories(points, image.shape)
    assert (seeds > 0).sum() == 2 and (lands[:, :49] == 1).all() and (lands[:, 50:] == 2).all()
    for res in segment_image(image, points):
        assert iou(res.mask, truth == res.label) > 0.75
