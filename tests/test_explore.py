from types import SimpleNamespace

import numpy as np

from segsem_lite.config import GateConfig
from segsem_lite.explore import gate_explorer


def test_sliders_change_which_targets_fall_back():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    results = [SimpleNamespace(stem="s", label=i, candidates=m[None], candidate_scores=[s])
               for i, s in enumerate([0.95, 0.85, 0.5])]
    box = gate_explorer(results, [None] * 3, [m] * 3, GateConfig(tau_conf=0.9))
    assert box.fallbacks == 2 and "2 of 3 targets fall back" in box.summary.value
    box.sliders["tau_conf"].value = 0.8
    assert box.fallbacks == 1
    box.sliders["tau_conf"].value = 1.0
    assert box.fallbacks == 3
