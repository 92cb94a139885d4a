"""Shared fixtures: small seeded datasets from the package's own generator."""

from __future__ import annotations

import numpy as np
import pytest

from segsem_lite.synth import write_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Two images per exposure case (one train, one test), 256x256 px, seed 11."""
    return write_dataset(tmp_path_factory.mktemp("ds") / "small", n_per_case=2, seed=11, size=256)


@pytest.fixture
def disk():
    """A disk of radius 10 px centred at (x=20, y=16) in a 32x40 image."""
    yy, xx = np.mgrid[:32, :40]
    return (xx - 20) ** 2 + (yy - 16) ** 2 <= 10 ** 2
