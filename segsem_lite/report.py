"""Reports on new data: a chapter of the book run by papermill on a dataset, as a notebook and an HTML page.

``segsem report CHAPTER DATA --out OUT`` is this module's :func:`run_chapter`: the chapter's
``data_dir`` parameter is set to DATA and its ``out_dir`` to ``OUT/files``; the executed
notebook and a standalone HTML page of it land in OUT.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from .errors import SegSEMError

__all__ = ["book_dir", "chapter_names", "chapter_parameters", "paste_glue", "run_chapter"]


def book_dir() -> Path:
    """The book's chapters, beside the package (a clone or an editable install)."""
    return Path(__file__).resolve().parents[1] / "book"


def chapter_names() -> list[str]:
    """Names of the book's chapters (``07_exposure_analysis``, ...)."""
    d = book_dir()
    return sorted(p.stem for p in d.glob("[0-9]*.md")) if d.is_dir() else []


def _resolve(chapter: str | Path) -> Path:
    path = Path(chapter)
    if path.is_file():
        return path
    for candidate in (book_dir() / f"{chapter}.md", book_dir() / str(chapter)):
        if candidate.is_file():
            return candidate
    names = chapter_names()
    raise SegSEMError(f"chapter {str(chapter)!r}: no such chapter file; expected a path or one of "
                      f"{', '.join(names) if names else '(no book/ folder beside the package)'}")


def chapter_parameters(notebook: Any) -> dict[str, Any]:
    """The names and default values of a notebook's ``parameters`` cell."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                target = node.target if isinstance(node, ast.AnnAssign) else (
                    node.targets[0] if isinstance(node, ast.Assign) else None)
                if isinstance(target, ast.Name) and node.value is not None:
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[target.id] = None
            return out
    return {}


def run_chapter(chapter: str | Path, data: str | Path, out: str | Path, *, parameters: dict | None = None,
                kernel: str = "python3", html: bool = True) -> tuple[Path, Path | None]:
    """Run a chapter on a dataset and write the executed notebook and a standalone HTML page.

    Parameters
    ----------
    chapter : str or path
        A chapter name (``07_exposure_analysis``) or a MyST ``.md`` / ``.ipynb`` file.
    data : path
        Given to the chapter as ``data_dir``.
    out : path
        Folder of ``<chapter>.ipynb``, ``<chapter>.html`` and ``files/`` (the chapter's ``out_dir``).
    parameters : dict, optional
        Other parameters of the chapter (see its Parameters cell).
    kernel : str
    html : bool
        Also write the HTML page (nbconvert).

    Returns
    -------
    (Path, Path or None)
        The executed notebook and the HTML page.

    Raises
    ------
    SegSEMError
        For an unknown chapter or parameter, a missing dataset, or a chapter that fails on the
        data (the message gives the chapter's error and where the partial notebook is).
    """
    import jupytext
    import papermill

    src = _resolve(chapter)
    data = Path(data)
    if not data.exists():
        raise SegSEMError(f"{data}: no such dataset folder or image file")
    nb = jupytext.read(src)
    declared = chapter_parameters(nb)
    params = dict(parameters or {})
    if "data_dir" not in declared:
        raise SegSEMError(f"{src.name}: this chapter takes no data_dir parameter; it cannot run on a dataset")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise SegSEMError(f"{src.name}: unknown parameter(s) {', '.join(unknown)}; the chapter takes "
                          f"{', '.join(sorted(declared))}")
    out = Path(out)
    (out / "files").mkdir(parents=True, exist_ok=True)
    params["data_dir"] = str(data.resolve())
    if "out_dir" in declared:
        params["out_dir"] = str((out / "files").resolve())
    executed = out / f"{src.stem}.ipynb"
    try:
        papermill.execute_notebook(nb, str(executed), parameters=params, kernel_name=kernel, progress_bar=False,
                                   cwd=str(out))
    except papermill.PapermillExecutionError as exc:
        raise SegSEMError(f"{src.name} failed on {data}: {exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}"
                          f" (the notebook up to the failing cell is {executed})") from None
    page = None
    if html:
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(paste_glue(nbformat.read(executed, as_version=4)))
        page = out / f"{src.stem}.html"
        page.write_text(body, encoding="utf-8")
    return executed, page


_GLUE_PREFIX = "application/papermill.record/"
_GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([\w.-]+)(?::([^`]*))?`")
_GLUE_FIGURE = re.compile(r"```\{glue:figure\} ([\w.-]+)\n(?::[^\n]*\n)*\n?(.*?)\n?```", re.S)


def _plain(text: str, spec: str) -> str:
    """A glued value's text as myst-nb's ``{glue:text}`` role formats it."""
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if not spec:
        return str(value)
    try:
        return format(float(value) if spec[-1] in "eEfFgGn%" else value, spec)
    except (TypeError, ValueError):
        return str(value)


def paste_glue(nb):
    """The executed chapter with its glued values pasted into the prose, for a page made without Sphinx.

    The book's chapters state their results with myst-nb's ``glue``; Sphinx pastes them when it
    builds the site. nbconvert does not, so the page ``segsem report`` writes gets the same text
    (``{glue:text}`` roles) and figures (``{glue:figure}`` directives, with their captions) here,
    and the other roles (terms, pages, citations, API names) read as their text.
    """
    values = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                values[name] = {k[len(_GLUE_PREFIX):]: v for k, v in o.get("data", {}).items() if k.startswith(_GLUE_PREFIX)}

    def figure(m: "re.Match") -> str:
        v = values.get(m.group(1), {})
        caption = " ".join(m.group(2).split())
        if "image/png" not in v:
            return f"*{caption}*"
        return f"![{caption}](data:image/png;base64,{v['image/png'].strip()})\n\n*{caption}*"

    def role(m: "re.Match") -> str:
        v = values.get(m.group(1))
        return m.group(0) if v is None else _plain(v.get("text/plain", ""), m.group(2) or "")

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _ROLE.sub(_role_text, _GLUE_ROLE.sub(role, _GLUE_FIGURE.sub(figure, cell.source)))
    return nb


_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")


def _role_text(m: "re.Match") -> str:
    """What a Sphinx role reads as on a page made without Sphinx: a term or page by its text, code as code."""
    kind, text = m.group(1), re.sub(r"\s*<[^>]*>$", "", m.group(2)).lstrip("~")
    if kind.startswith("py:"):
        return f"`{text}`"
    if kind == "cite":
        return f"[{text}]"
    return text
