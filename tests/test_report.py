"""segsem report: a chapter run on a dataset by papermill, written as a notebook and an HTML page."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _segsem(*args):
    return subprocess.run([sys.executable, "-m", "segsem_lite.cli", *map(str, args)], capture_output=True, text=True)


def test_report_runs_a_chapter_on_a_dataset(tmp_path):
    out = tmp_path / "report"
    r = _segsem("report", "07_exposure_analysis", ROOT / "data_samples", "--out", out, "-p", "model=traditional",
                "-p", "appearance_per_condition=1", "-p", "appearance_size=128", "-p", "hard_images=3",
                "-p", "hard_size=128")
    assert r.returncode == 0, r.stderr
    nb = json.loads((out / "07_exposure_analysis.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "data_samples" in "".join(injected[0]["source"])
    assert "model = \"traditional\"" in "".join(injected[0]["source"])
    page = (out / "07_exposure_analysis.html").read_text()
    assert "<table" in page and "data:image/png;base64" in page
    # the computed sentences and captioned figures of the site are on the page too, and no raw role
    assert "SegSEM against the best classical path is" in page and "Table I per exposure case" in page
    assert "{glue" not in page and "{term}" not in page and "{doc}" not in page
    assert any((out / "files").iterdir())  # the chapter's out_dir


def test_report_says_what_is_wrong(tmp_path):
    r = _segsem("report", "99_nothing", ROOT / "data_samples", "--out", tmp_path / "o")
    assert r.returncode == 2 and "chapter '99_nothing': no such chapter file" in r.stderr
    assert "07_exposure_analysis" in r.stderr
    r = _segsem("report", "07_exposure_analysis", ROOT / "data_samples", "--out", tmp_path / "o", "-p", "colour=1")
    assert r.returncode == 2 and "unknown parameter(s) colour" in r.stderr
    r = _segsem("report", "07_exposure_analysis", tmp_path / "missing", "--out", tmp_path / "o")
    assert r.returncode == 2 and "missing: no such dataset folder" in r.stderr
    r = _segsem("report", "91_api", ROOT / "data_samples", "--out", tmp_path / "o")
    assert r.returncode == 2 and "takes no data_dir" in r.stderr


def test_table_one_figure_says_why_the_fallback_panel_is_empty():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    from segsem_lite.plotting import plot_table_one

    rows = {"exposure_case": ["bright_resist", "charging"], "n": [3, 4], "fallback_count": [0, 0]}
    for m in ("iou", "f1"):
        for name in ("standard", "standard_ep", "segsem"):
            rows[f"{m}_{name}_mean"], rows[f"{m}_{name}_std"] = [0.5, 0.6], [0.1, 0.1]
    per_case = pd.DataFrame(rows)
    said = lambda fig: " ".join(t.get_text() for t in fig.axes[-1].texts)  # noqa: E731
    assert "all 7" in said(plot_table_one(per_case))
    assert "no SAM2 model" in said(plot_table_one(per_case, gated=False))
    per_case["fallback_count"] = [1, 0]
    assert said(plot_table_one(per_case)) == ""
