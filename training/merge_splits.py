"""Merge a training set and a validation set into one dataset, as ``segsem finetune`` takes it.

Usage: python training/merge_splits.py OUT TRAIN VAL

OUT gets ``images/``, ``masks/`` and ``layout/`` of symbolic links to both sets' files (a link
already there is kept) and one ``meta.csv``: TRAIN's rows with split ``train``, then VAL's with
split ``val``.
"""

import os
import sys
from pathlib import Path

import pandas as pd

FOLDERS = ("images", "masks", "layout")


def main() -> None:
    out, train, val = (Path(a) for a in sys.argv[1:4])
    parts = []
    for src, split in ((train, "train"), (val, "val")):
        for sub in FOLDERS:
            (out / sub).mkdir(parents=True, exist_ok=True)
            for f in (src / sub).glob("*"):
                if not os.path.lexists(out / sub / f.name):
                    os.symlink(f.resolve(), out / sub / f.name)
        parts.append(pd.read_csv(src / "meta.csv").assign(split=split))
    pd.concat(parts, ignore_index=True).to_csv(out / "meta.csv", index=False)


if __name__ == "__main__":
    main()
