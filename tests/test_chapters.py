"""Every chapter of the book runs with papermill, with small parameters (issue: the book).

Chapters are MyST notebooks; papermill reads the notebook jupytext makes of them in memory.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import jupytext
import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.md" for f in files]


def _code_chapters() -> list[Path]:
    return [p for p in _chapters() if "{code-cell}" in p.read_text()]


#: Small parameters per chapter for CI, and parameter sets that force branches.
SCRATCH = {"model": "mini-scratch", "device": "cpu"}
RUNS = {
    "01_introduction": [{}],
    "02_sem_images": [{"size": 128, "n_per_case": 2, "stages_case": 10}],
    "03_domain_gap": [{**SCRATCH, "n_generic": 3}],
    "04_selective_finetuning": [{**SCRATCH, "n_steps": 4, "val_every": 2}],
    "05_loss_terms": [{**SCRATCH, "n_steps": 3}],
    "06_gating_and_fallback": [{**SCRATCH, "per_condition": 1, "size": 160},
                               {**SCRATCH, "tau_conf": 0.0, "per_condition": 1, "size": 128},
                               {**SCRATCH, "tau_conf": 1.0, "data_dir": str(ROOT / "data_samples")}],
    "07_exposure_analysis": [{"model": "traditional", "appearance_per_condition": 1, "appearance_size": 128,
                              "hard_images": 4, "hard_size": 128},
                             {**SCRATCH, "tau_conf": 0.0, "appearance_per_condition": 0, "hard_images": 0}],
    "08_contours_for_opc": [{"stem": "case10_005"}, {**SCRATCH}],
    "09_your_own_images": [{"model": "traditional"},
                           {"data_dir": str(ROOT / "data_samples" / "real" / "Test02.tif"), "show": "Test02"}],
    "90_model_card": [{"n_generic": 3, "fresh_per_case": 1}],
}


def _visible_code_and_prose(chapter: Path) -> tuple[int, int]:
    """Non-empty lines of code a reader sees (cells not removed or folded) and of prose (not headings or fences)."""
    code = prose = 0
    for c in jupytext.read(chapter).cells:
        lines = [ln for ln in c.source.splitlines() if ln.strip()]
        if c.cell_type == "code":
            if not {"remove-input", "remove-cell", "hide-input"} & set(c.metadata.get("tags", [])):
                code += len(lines)
        else:
            prose += sum(not ln.startswith(("#", "```", ":")) for ln in lines)
    return code, prose


@pytest.mark.parametrize("stem", ["03_domain_gap", "04_selective_finetuning", "05_loss_terms",
                                  "06_gating_and_fallback", "07_exposure_analysis", "08_contours_for_opc"])
def test_chapters_read_like_a_tutorial(stem):
    # plumbing is hidden: at most 1.5 visible code lines per line of prose
    code, prose = _visible_code_and_prose(ROOT / "book" / f"{stem}.md")
    assert code <= 1.5 * prose, f"{stem}: {code} code lines against {prose} lines of prose"


#: Longest visible code line: the theme's content column, at its widest (windows of 1440 px and more), holds 88
#: characters in a code cell (82 at 1366 px); the browser test below checks the built pages themselves.
PAGE_WIDTH_CHARS = 88


@pytest.mark.parametrize("chapter", _code_chapters(), ids=lambda p: p.stem)
def test_visible_code_fits_the_page(chapter):
    long = []
    for c in jupytext.read(chapter).cells:
        if c.cell_type == "code" and not {"remove-input", "remove-cell"} & set(c.metadata.get("tags", [])):
            long += [ln for ln in c.source.splitlines() if len(ln) > PAGE_WIDTH_CHARS]
    assert not long, f"{chapter.stem}: {len(long)} code lines over {PAGE_WIDTH_CHARS} characters: {long[:2]}"


def test_every_chapter_has_a_run():
    assert {p.stem for p in _code_chapters()} == set(RUNS)


@pytest.mark.parametrize("chapter", _code_chapters(), ids=lambda p: p.stem)
def test_chapter_shape(chapter):
    nb = jupytext.read(chapter)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    for line in tagged[0].source.splitlines():
        if line.strip():
            node = ast.parse(line.split("#")[0]).body[0]
            assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), line
            assert "#" in line, f"parameter without a comment: {line}"
    # papermill reads every parameter (a comment it cannot parse hides the line from it)
    named = [ln.split(":")[0] for ln in tagged[0].source.splitlines() if ln.strip()]
    assert sorted(papermill.inspect_notebook(nb)) == sorted(named)
    for c in code:
        assert not re.search(r"^\s*(def|class) ", c.source, re.M), "no def or class in chapters"
        assert "!pip" not in c.source and "os.environ" not in c.source
    headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n".join(headings)
    assert len(re.findall(r"^# ", text, re.M)) == 1
    for section in ("## Overview", "## Imports", "## Parameters", "## Checks"):
        assert section in text, section
    checks_at = max(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Checks" in c.source)
    assert nb.cells[checks_at + 1].cell_type == "code" and "assert" in nb.cells[checks_at + 1].source


@pytest.mark.parametrize(
    "chapter, params",
    [(ROOT / "book" / f"{name}.md", p) for name, runs in RUNS.items() for p in runs],
    ids=lambda v: v.stem if isinstance(v, Path) else ",".join(f"{k}={v[k]}" for k in v) or "defaults",
)
def test_chapter_runs(chapter, params, tmp_path, executed_dir):
    nb = jupytext.read(chapter)
    accepted = papermill.inspect_notebook(nb)
    params = dict(params)
    if "out_dir" in accepted:
        params.setdefault("out_dir", str(tmp_path / "out"))
    unknown = set(params) - set(accepted)
    assert not unknown, f"unknown parameters {unknown}"
    out = executed_dir / f"{chapter.stem}.ipynb"
    if out.exists():  # the first parameter set of each chapter builds the site below
        out = tmp_path / out.name
    papermill.execute_notebook(nb, str(out), parameters=params, kernel_name="python3", progress_bar=False,
                               cwd=str(tmp_path))


@pytest.fixture(scope="module")
def executed_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("executed")


def test_site_in_a_real_browser(executed_dir, tmp_path):
    """The executed chapters built into the site; headless Chromium opens each page."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make setup` (.ci/install-chromium)"
    book = tmp_path / "site"
    (book / "book").mkdir(parents=True)
    import nbformat

    for ch in _chapters():
        src = executed_dir / f"{ch.stem}.ipynb"
        if src.exists():  # without the parameters this test injected (its temporary folders)
            nb = nbformat.read(src, as_version=4)
            nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
            nbformat.write(nb, book / "book" / src.name)
        else:
            shutil.copy(ch, book / "book" / ch.name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "_toc.yml", book / "_toc.yml")
    shutil.copytree(ROOT / "_static", book / "_static")
    shutil.copy(ROOT / "book" / "references.bib", book / "book" / "references.bib")
    jb = Path(sys.executable).parent / "jupyter-book"
    r = subprocess.run([str(jb), "build", str(book), "-W", "--keep-going"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    pages = {}
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=3000", "--dump-dom"]
    for ch in _chapters():
        html = book / "_build" / "html" / "book" / f"{ch.stem}.html"
        dom = subprocess.run([*browser, html.as_uri()], capture_output=True, text=True, timeout=120).stdout
        pages[ch.stem] = dom
        assert "<h1" in dom, ch.stem
    # no code cell runs off the page where the content column is at its widest (1440 px window). The probe
    # measures as soon as it is parsed (the style sheets are in by then) and again on load: on a slow machine
    # the load event may come after the browser has dumped the page
    probe = ("<script>(() => { const probe = () => document.body.setAttribute('data-overflow', "
             "[...document.querySelectorAll('div.cell_input pre')].filter(e => e.scrollWidth > e.clientWidth)"
             ".map(e => e.textContent.split('\\n').find(l => l.length > 80) || '').join(' | ')); "
             "probe(); window.addEventListener('load', probe); })();</script>")
    for ch in _code_chapters():
        html = book / "_build" / "html" / "book" / f"{ch.stem}.html"
        probed = html.with_name(f"probe_{ch.stem}.html")
        probed.write_text(html.read_text().replace("</body>", probe + "</body>"))
        dom = subprocess.run([*browser, "--window-size=1440,900", probed.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        probed.unlink()
        overflow = re.search(r'data-overflow="([^"]*)"', dom)
        assert overflow is not None, f"{ch.stem}: the width probe did not run"
        assert not overflow.group(1), f"{ch.stem}: code wider than the page: {overflow.group(1)[:200]}"
    # MathJax and the widget scripts come with the site (air-gapped fabs): no page fetches a script, and the
    # formulas are typeset offline
    site = book / "_build" / "html"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (site / "_static" / "widgets" / "embed-amd.js").exists()
    for page in site.rglob("*.html"):
        text = page.read_text(errors="replace")
        assert not re.search(r"<script[^>]+src=\"(https?:)?//", text, re.I), page.name
    for stem in ("01_introduction", "05_loss_terms"):
        assert "<mjx-container" in pages[stem], f"{stem}: formulas not typeset"
    # no path of the machine that built the site shows on a page
    for ch in _chapters():
        text = (site / "book" / f"{ch.stem}.html").read_text(errors="replace")
        leaked = re.findall(r"(?:/tmp/|/home/|/work/|pytest-of-)[^\s<\"']*", text)
        assert not leaked, f"{ch.stem}: {leaked[:3]}"
    # numbered figures with captions, numbered equations
    for stem in ("03_domain_gap", "06_gating_and_fallback", "07_exposure_analysis"):
        assert re.search(r"Fig\. \d", pages[stem]) and "caption" in pages[stem], f"{stem}: no numbered caption"
    assert re.search(r"\(\d\)", pages["05_loss_terms"]) and "eq-epe" in pages["05_loss_terms"]
    for stem, dom in pages.items():
        if stem not in ("91_api", "95_glossary", "99_references"):
            assert "<img" in dom or "<table" in dom, f"{stem}: no figure or table"
    for stem in ("02_sem_images", "05_loss_terms", "07_exposure_analysis"):
        assert "<img" in pages[stem] and "<table" in pages[stem], stem
    assert "application/vnd.jupyter.widget-state+json" in pages["06_gating_and_fallback"]
    assert "application/vnd.jupyter.widget-view+json" in pages["06_gating_and_fallback"]
    assert "autofunction" not in pages["91_api"] and "segment_image" in pages["91_api"]
    # the bibliography: the paper by its arXiv number, cited from the introduction
    assert "2602.20471" in pages["99_references"] and "Sauvola" in pages["99_references"]
    assert "99_references.html#id" in pages["01_introduction"]
    # a chapter launches on Binder from the repository, and downloads as a notebook
    assert "mybinder.org/v2/gh/segsem-lite/segsem_lite" in pages["07_exposure_analysis"]
    # terms link to the glossary
    assert "95_glossary.html#term-OPC" in pages["01_introduction"] and "term-EPE" in pages["08_contours_for_opc"]


def test_bad_parameter_fails_at_the_top(tmp_path):
    nb = jupytext.read(ROOT / "book" / "08_contours_for_opc.md")
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(nb, str(tmp_path / "x.ipynb"), parameters={"data_dir": str(tmp_path / "none")},
                                   kernel_name="python3", progress_bar=False)
    assert "no such dataset folder" in str(info.value)
    assert info.value.exec_count <= 4  # imports, parameters, injected parameters, then the check


#: Modules whose public functions and classes (their ``__all__``) the API page must document.
API_MODULES = ("segsem_lite", "segsem_lite.layout", "segsem_lite.sam.losses", "segsem_lite.notebook",
               "segsem_lite.instrument", "segsem_lite.discover", "segsem_lite.metrology", "segsem_lite.report",
               "segsem_lite.sam", "segsem_lite.synth", "segsem_lite.synth.independent", "segsem_lite.synth.chip",
               "segsem_lite.synth.wide",
               "segsem_lite.engine", "segsem_lite.batch", "segsem_lite.plotting", "segsem_lite.explore",
               "segsem_lite.scale", "segsem_lite.edges", "segsem_lite.sam.finetune", "segsem_lite.sam.calibrate",
               "segsem_lite.sam.study", "segsem_lite.label", "segsem_lite.sam.adapt")


def test_the_api_page_documents_every_public_function():
    import importlib
    import inspect

    text = (ROOT / "book" / "91_api.md").read_text()
    named = {d.rsplit(".", 1)[-1] for d in re.findall(r"\.\. auto(?:function|class):: ([\w.]+)", text)}
    named |= {m.strip() for ms in re.findall(r":members: ([\w, ]+)", text) for m in ms.split(",")}
    whole = set(re.findall(r"\.\. automodule:: ([\w.]+)\n\s+:members:\n", text))
    missing = []
    for name in API_MODULES:
        mod = importlib.import_module(name)
        if name in whole:
            continue
        for attr in mod.__all__:
            obj = getattr(mod, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and attr not in named:
                missing.append(f"{name}.{attr}")
    assert not missing, f"not on the API page: {missing}"
