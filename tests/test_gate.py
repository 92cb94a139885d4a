import numpy as np
import pytest

from segsem_lite.config import GateConfig
from segsem_lite.dataset import Design
from segsem_lite.gate import gate_candidates, mask_aspect


def _rect(h, w, shape=(40, 40), at=(5, 5)):
    m = np.zeros(shape, bool)
    m[at[0]: at[0] + h, at[1]: at[1] + w] = True
    return m


def test_best_scoring_passing_candidate_is_accepted():
    good = _rect(10, 20)
    two = good | _rect(6, 6, at=(30, 30))  # a 36 px fragment
    d = gate_candidates(np.stack([two, good, good]), np.array([0.99, 0.93, 0.95]), design=Design(area_px=200, aspect=2.0))
    assert d.accepted_index == 2
    assert d.checks[0].failed == ("topology",)
    assert "2 connected regions" in d.checks[0].reasons[0]


def test_specks_below_min_region_px_do_not_count():
    speck = _rect(10, 20) | _rect(3, 3, at=(30, 30))  # a 9 px speck, which refinement removes anyway
    assert gate_candidates(speck[None], np.array([0.95])).accepted
    strict = gate_candidates(speck[None], np.array([0.95]), config=GateConfig(min_region_px=0))
    assert strict.failed_checks == ("topology",)


def test_each_check_can_reject():
    cfg = GateConfig(tau_conf=0.9, area_tolerance=0.2, aspect_tolerance=0.2)
    design = Design(area_px=200, aspect=2.0)
    low = gate_candidates(_rect(10, 20)[None], np.array([0.5]), design=design, config=cfg)
    assert not low.accepted and low.failed_checks == ("confidence",)
    big = gate_candidates(_rect(20, 20)[None], np.array([0.95]), design=design, config=cfg)
    assert big.failed_checks == ("geometry",) and "area 400 px" in big.summary() and "aspect 1.00" in big.summary()
    empty = gate_candidates(np.zeros((1, 40, 40), bool), np.array([0.95]), design=design, config=cfg)
    assert empty.failed_checks == ("topology",)


def test_geometry_skipped_without_design():
    d = gate_candidates(_rect(30, 30)[None], np.array([0.95]))
    assert d.accepted and d.summary().startswith("accepted candidate 0")


def test_threshold_is_inclusive_and_validated():
    assert gate_candidates(_rect(5, 5)[None], np.array([0.9])).accepted
    with pytest.raises(ValueError, match="tau_conf"):
        GateConfig(tau_conf=1.5)


def test_mask_aspect():
    assert mask_aspect(_rect(10, 30)) == pytest.approx(3.0)
    assert mask_aspect(np.zeros((3, 3), bool)) is None


def test_regate_reuses_recorded_candidates():
    from types import SimpleNamespace

    from segsem_lite.gate import regate

    r = SimpleNamespace(candidates=np.stack([_rect(10, 20)]), candidate_scores=[0.85])
    assert not regate([r], [None], GateConfig(tau_conf=0.9))[0].accepted
    assert regate([r], [None], GateConfig(tau_conf=0.8))[0].accepted
    with pytest.raises(ValueError, match="keep_candidates"):
        regate([SimpleNamespace(candidates=None, candidate_scores=[])], [None])


def test_specks_do_not_stretch_the_geometry():
    line = _rect(30, 6, shape=(60, 60), at=(5, 20))  # aspect 5
    speck = line | _rect(3, 3, at=(50, 50), shape=(60, 60))  # a speck far off would make the bounding box square
    design = Design(area_px=180, aspect=5.0)
    assert gate_candidates(speck[None], np.array([0.95]), design=design).accepted
    strict = gate_candidates(speck[None], np.array([0.95]), design=design, config=GateConfig(min_region_px=0))
    assert "geometry" in strict.failed_checks
