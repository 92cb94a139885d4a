"""What the book's chapters need besides the pipeline: resolving their ``data_dir`` and ``out_dir`` parameters,
and the sentences that state their results, computed from those results."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .dataset import Dataset, sample_dataset
from .errors import SegSEMError

__all__ = ["open_dataset", "output_dir", "verdict", "without_paths"]


def open_dataset(data_dir: str) -> Dataset:
    """The dataset a chapter reads: ``data_dir``, or the shipped samples when it is empty.

    Raises
    ------
    SegSEMError
        If ``data_dir`` is not a dataset folder.
    """
    return Dataset(data_dir if data_dir else sample_dataset())


def output_dir(out_dir: str, chapter: str) -> Path:
    """The folder a chapter writes to: ``out_dir`` (created), or a new temporary folder when empty."""
    if not out_dir:
        return Path(tempfile.mkdtemp(prefix=f"segsem_{chapter}_"))
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegSEMError(f"out_dir={out_dir!r}: cannot create the folder ({exc.strerror})") from None
    return path


def without_paths(value):
    """``value`` with every absolute path in it cut to its last part (what a published page may show).

    A model's provenance or a command line recorded on the machine that made it names folders of that
    machine; ``/data/corpus/generic3`` becomes ``generic3``. Values that are not strings pass unchanged.
    """
    import re

    if not isinstance(value, str):
        return value
    return re.sub(r"(?<![\w.~])/(?:[\w.+-]+/)+([\w.+-]*)", r"\1", value)


def verdict(table, *, metric: str = "iou", margin: float = 0.01, unit: str = "case") -> str:
    """Where SegSEM beats the best classical path, where it loses, and where they tie, as one sentence.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`segsem_lite.batch.table_one`'s frame; its ``all`` row is left out.
    metric : str
        A metric of the table (higher is better, except ``epe_px``).
    margin : float
        Differences within it count as a tie.
    unit : str
        What a row is, for the sentence ("case", "condition").
    """
    from .batch import PIPELINE_NAMES

    rows = table.drop(index="all", errors="ignore")
    best = rows[[(metric, PIPELINE_NAMES["standard"]), (metric, PIPELINE_NAMES["standard_ep"])]]
    sign = -1.0 if metric.startswith("epe") else 1.0
    best = best.min(axis=1) if sign < 0 else best.max(axis=1)
    gain = sign * (rows[(metric, PIPELINE_NAMES["segsem"])] - best)

    def listed(sel) -> str:
        n = int(sel.sum())
        return f"{unit}{'s' if n != 1 else ''} " + ", ".join(f"{k} ({sign * v:+.3f})" for k, v in gain[sel].items())

    wins, losses = gain > margin, gain < -margin
    ties = int((~wins & ~losses).sum())
    parts = []
    if wins.any():
        parts.append(f"better by more than {margin:g} in {listed(wins)}")
    if losses.any():
        parts.append(f"worse by more than {margin:g} in {listed(losses)}")
    if ties:
        parts.append(f"within {margin:g} in {'all ' if ties == len(gain) else ''}{ties} {unit}{'s' if ties != 1 else ''}")
    name = {"iou": "IoU", "f1": "F1", "epe_px": "mean EPE (px)"}.get(metric, metric)
    return f"In {name}, SegSEM against the best classical path is " + "; ".join(parts) + "."
