"""Discovery on the second renderer's images: every feature found, in both tones, and nothing in noise."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from segsem_lite.dataset import Dataset
from segsem_lite.discover import discover_features
from segsem_lite.synth.independent import CONDITIONS, render_independent


def _inside(instances):
    """Labels of the features that the image border does not cut."""
    out = set()
    for label, sl in enumerate(ndi.find_objects(instances), 1):
        if sl is not None and sl[0].start > 0 and sl[1].start > 0 and sl[0].stop < instances.shape[0] \
                and sl[1].stop < instances.shape[1]:
            out.add(label)
    return out


@pytest.mark.parametrize("condition", ["bright_resist", "no_edge_band", "charging"])
@pytest.mark.parametrize("tone", ["line", "hole"])
def test_contact_arrays_of_both_tones_are_found(condition, tone):
    hit = total = off = found = 0
    for seed in range(2):
        s = render_independent(seed, appearance=CONDITIONS[condition], size=320, pattern="contacts", tone=tone,
                               feature_px=20)
        d = discover_features(s.image)
        under = [s.instances[int(f.prompt_xy[1]), int(f.prompt_xy[0])] for f in d.features]
        inside = _inside(s.instances)
        hit += len(inside & set(under))
        total += len(inside)
        off += sum(u == 0 for u in under)
        found += len(under)
    assert total > 40
    assert hit >= 0.95 * total and off <= 0.05 * found


def test_grating_lines_cross_the_field_and_are_flagged():
    s = render_independent(3, appearance=CONDITIONS["no_edge_band"], size=320, pattern="grating", tone="line",
                           feature_px=16)
    d = discover_features(s.image)
    assert d.tone == "bright"
    lines = [f for f in d.features if f.touches_border and f.box_xyxy[3] - f.box_xyxy[1] > 0.9 * s.image.shape[0]]
    truth = [sl for sl in ndi.find_objects(s.instances) if sl is not None and sl[0].stop - sl[0].start > 0.9 * 320]
    assert abs(len(lines) - len(truth)) <= 1 and len(truth) >= 5


def test_noise_alone_has_no_features():
    rng = np.random.default_rng(4)
    for _ in range(5):
        noise = np.clip(rng.normal(120, 20, (256, 256)), 0, 255).astype(np.uint8)
        assert discover_features(noise).features == []


def test_discovered_targets_skip_the_data_bar_and_thin_border_slivers(tmp_path):
    s = render_independent(1, appearance=CONDITIONS["bright_resist"], size=320, pattern="contacts", tone="hole",
                           feature_px=20)
    img = s.image.copy()
    img[280:] = 0
    img[290:300, 10:200:4] = 255
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "bar.png")
    ds = Dataset(tmp_path / "bar.png")
    targets = ds.targets("bar", image=img)
    assert ds.field("bar", img) == (0, 0, 320, 280)
    assert targets and all(t.prompt_xy[1] < 280 for t in targets)
    assert all(t.size_px >= 8 for t in targets if t.touches_border)
