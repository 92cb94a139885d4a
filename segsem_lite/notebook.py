"""What the book's chapters need besides the pipeline: resolving their ``data_dir`` and ``out_dir`` parameters."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .dataset import Dataset, sample_dataset
from .errors import SegSEMError

__all__ = ["open_dataset", "output_dir"]


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
