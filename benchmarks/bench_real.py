"""Seconds to discover and extract every feature of a real 1024x768 image, per model.

Usage: python benchmarks/bench_real.py [--image data_samples/real/Ctest1.tif] [--models traditional,default]
       [--repeat 3] [--threads 2]
Goals (on 2 cores): at most 15 s with the default model and 3 s with ``--model traditional`` for a
1024x768 image with about 300 features (Ctest1: 320 targets).

Each run is ``extract_dataset`` on the one file as ``segsem extract FILE`` runs it (model loaded
beforehand, as a long-running batch would): reading, data bar, discovery, the pipeline per target,
metrology, and every output file. Reported: the best and median of the repeats, with the split
between discovery and the rest taken from one profiled run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path,
                        default=Path(__file__).resolve().parent.parent / "data_samples" / "real" / "Ctest1.tif")
    parser.add_argument("--models", default="traditional,default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from segsem_lite.batch import extract_dataset
    from segsem_lite.dataset import Dataset
    from segsem_lite.registry import load_model

    ds = Dataset(args.image)
    stem = ds.stems[0]
    image = ds.load_image(stem)
    t0 = time.perf_counter()
    targets = ds.targets(stem, image=image)
    discovery = time.perf_counter() - t0
    print(f"{args.image.name}: {image.shape[1]}x{image.shape[0]} px, {len(targets)} targets discovered in "
          f"{discovery:.2f} s")
    for name in args.models.split(","):
        model = load_model(name)
        times = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                rows = extract_dataset(ds, Path(tmp) / "out", model=model, progress=False)
                times.append(time.perf_counter() - t0)
        sources = {}
        for r in rows:
            sources[r["source"]] = sources.get(r["source"], 0) + 1
        print(f"  --model {name}: best {min(times):.2f} s, median {statistics.median(times):.2f} s over "
              f"{args.repeat} runs; {len(rows)} targets ({', '.join(f'{k}: {v}' for k, v in sorted(sources.items()))})")


if __name__ == "__main__":
    main()
