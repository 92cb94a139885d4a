"""Time of the pipeline per 512x512 target, stage by stage (file I/O excluded).

Usage: python benchmarks/bench_pipeline.py [--threads 1] [--n-per-case 2] [--model traditional|mini-sem|...]
Goals: the standard pipeline at most 15 ms per target on one core; the SegSEM pipeline with
mini-sem at most 150 ms per target on two cores (``--model mini-sem --threads 2``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: 1, one core)")
    ap.add_argument("--n-per-case", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="traditional", help="traditional, or a SAM2 model name / checkpoint")
    args = ap.parse_args()

    import cv2

    cv2.setNumThreads(args.threads)
    from segsem_lite.registry import load_model

    model = load_model(args.model, device="cpu")
    if model is not None:
        import torch

        torch.set_num_threads(args.threads)
    from segsem_lite import Dataset, segment_image
    from segsem_lite.synth import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        ds = Dataset(write_dataset(tmp, n_per_case=args.n_per_case, seed=7))
        images = []
        for stem in ds.stems:
            mask = ds.load_mask(stem)
            images.append((ds.load_image(stem), ds.targets(stem, mask=mask)))
    stages: dict[str, list[float]] = {}
    per_target = []
    for _ in range(args.repeats):
        for image, targets in images:
            t0 = time.perf_counter()
            results = segment_image(image, targets, model=model)
            wall = (time.perf_counter() - t0) * 1e3
            per_target.append(wall / max(1, len(targets)))
            for r in results:
                if isinstance(r, Exception):
                    continue
                stages.setdefault(f"source {r.source}", []).append(1.0)
                for k, v in r.timings_ms.items():
                    stages.setdefault(k, []).append(v)
    n_targets = sum(len(t) for _, t in images)
    name = "standard pipeline" if model is None else f"SegSEM pipeline with {args.model}"
    print(f"{name}, {len(images)} images of 512x512, {n_targets} targets, {args.repeats} repeats, "
          f"{args.threads} thread(s)")
    for k, v in stages.items():
        if k.startswith("source"):
            print(f"  {k:18s} {len(v) // args.repeats} targets")
        else:
            print(f"  {k:18s} median {np.median(v):7.2f} ms   mean {np.mean(v):7.2f} ms")
    print(f"  per target median {np.median(per_target):6.2f} ms   mean {np.mean(per_target):6.2f} ms (wall clock)")


if __name__ == "__main__":
    main()
