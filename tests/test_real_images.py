"""The shipped real SEM images through ``segsem extract`` as a user runs it (default model), checked against
what is known of each image (data_samples/real/SOURCES.md) and against independent classical measurements."""

import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy import signal
from skimage.feature import peak_local_max

from segsem_lite.dataset import read_mask, real_samples
from segsem_lite.instrument import read_sem


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "out"
    r = subprocess.run([sys.executable, "-m", "segsem_lite.cli", "extract", str(real_samples()), "--out", str(out),
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "no pixel size for 2 image(s) (logic_case3_inspected, logic_case3_reference)" in r.stderr
    return out, pd.read_csv(out / "records.csv"), pd.read_csv(out / "images.csv").set_index("stem")


def test_every_image_goes_through_with_the_pixel_size_from_its_file(run):
    out, records, images = run
    assert len(images) == 6 and (images.status == "ok").all() and (records.status != "error").all()
    assert images.loc["Ctest1", "pixel_size_nm"] == pytest.approx(0.9009)
    assert images.loc["Ctest1", "pixel_size_source"].startswith("Zeiss CZ_SEM")
    assert images.loc["Test02", "pixel_size_nm"] == pytest.approx(0.8241992, abs=1e-6)
    assert images.loc["Test02", "pixel_size_source"].startswith("Hitachi")
    assert images.loc["resist_lines_stack1", "pixel_size_source"] == "meta.csv"
    assert images.loc["logic_case3_reference", "pixel_size_source"].startswith("default")


def test_no_target_inside_a_data_bar(run):
    out, records, images = run
    for stem, first in (("Ctest1", 676), ("Ctest2", 699), ("Test02", 896), ("resist_lines_stack1", 2048)):
        assert images.loc[stem, "data_bar_row"] == first
        contours = pd.read_csv(out / stem / f"{stem}.contours.csv")
        assert contours.y_px.max() < first and (records[records.stem == stem].prompt_y < first).all()


def test_grating_pitch_and_every_full_line(run):
    out, records, images = run
    image = read_sem(real_samples() / "Test02.tif").image[:896].astype(float)
    profile = image.mean(axis=0) - image.mean()
    n = len(profile)
    spectrum = np.abs(np.fft.rfft(profile * np.hanning(n), n=16 * n))
    freq = np.fft.rfftfreq(16 * n)
    low = freq > 1 / 200  # periods under 200 px
    period = 1 / freq[low][np.argmax(spectrum[low])]
    assert images.loc["Test02", "pitch_nm"] == pytest.approx(period * 0.8241992, rel=0.01)
    peaks, _ = signal.find_peaks(ndi.gaussian_filter1d(profile, 2), distance=0.6 * period)
    full = [p for p in peaks if period / 2 <= p <= n - 1 - period / 2]
    lines = records[(records.stem == "Test02") & (records.kind == "line")]
    assert len(full) >= 38
    assert all(np.abs(lines.centroid_x.to_numpy() - p).min() < period / 4 for p in full)
    assert len(lines) == len(full)


def test_contact_holes_count_and_cd_against_a_50_percent_threshold(run):
    out, records, images = run
    image = read_sem(real_samples() / "Ctest1.tif").image[:676].astype(np.float32)
    smooth = cv2.GaussianBlur(image, (0, 0), 4)
    minima = peak_local_max(-smooth, min_distance=12, exclude_border=False)
    depth = smooth.mean() - smooth[minima[:, 0], minima[:, 1]]
    minima = minima[depth > 0.5 * np.median(depth)]
    r = 15  # a hole's radius, px: centres nearer the frame than this are cut by it
    whole = minima[(minima[:, 0] >= r) & (minima[:, 0] < 676 - r) & (minima[:, 1] >= r) & (minima[:, 1] < 1024 - r)]
    holes = records[(records.stem == "Ctest1") & (records.kind == "hole")]
    assert abs(len(holes) - len(whole)) <= 0.03 * len(whole)
    fine = cv2.GaussianBlur(image, (0, 0), 2)
    cds = []
    for y, x in whole:
        y0, x0 = max(0, y - 24), max(0, x - 24)
        window = fine[y0:y + 25, x0:x + 25]
        labels, _ = ndi.label(window < 0.5 * (window.min() + np.percentile(window, 95)))
        region = labels == labels[y - y0, x - x0]
        if not (region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()):
            cds.append(2 * np.sqrt(region.sum() / np.pi) * 0.9009)
    assert len(cds) > 200
    assert abs(holes.cd_nm.median() - np.median(cds)) <= 1.5


def test_pillars_are_bright_and_found(run):
    out, records, images = run
    pillars = records[records.stem == "Ctest2"]
    assert (pillars.tone == "bright").mean() > 0.95
    assert images.loc["Ctest2", "kind"] == "pillar" and (pillars.kind == "pillar").sum() > 250


def test_logic_pair_every_trench_found_and_cds_agree(run):
    out, records, images = run
    for stem in ("logic_case3_reference", "logic_case3_inspected"):
        image = read_sem(real_samples() / f"{stem}.tif").image.astype(np.float32)
        smooth = cv2.GaussianBlur(image, (0, 0), 2)
        otsu, _ = cv2.threshold(smooth.astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        trenches, n = ndi.label(smooth < otsu)
        found = np.zeros(image.shape, bool)
        for label in records[records.stem == stem].label:
            found |= read_mask(out / stem / f"{label}.mask.png") > 0
        for k in range(1, n + 1):
            trench = trenches == k
            if trench.sum() >= 100:
                assert (found & trench).sum() >= 0.5 * trench.sum(), (stem, k)
    # the fields are shifted, so each shows other features cut by its frame: the trenches whole in both count
    whole = records[(records.touches_border == 0) & records.stem.str.startswith("logic")]
    medians = whole.groupby("stem").cd_px.median()
    counts = whole.groupby("stem").size()
    assert counts["logic_case3_reference"] == counts["logic_case3_inspected"] >= 3
    assert abs(medians["logic_case3_reference"] - medians["logic_case3_inspected"]) <= 0.5
