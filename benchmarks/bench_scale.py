"""Images per second of ``extract`` on Dask with 1 and 2 workers, and the parallel efficiency.

Usage: python benchmarks/bench_scale.py [--model default] [--synthetic 200] [--workers 1,2]
Goal: at least 1.7x the one-worker rate with 2 workers on 2 cores for the default model.

Each run is ``segsem extract`` as the library runs it: a fresh local cluster (processes,
one thread each), the model loaded once per worker, one task per image. Two rates are
reported: over the whole run (cluster start and model loading included) and in steady
state (from the first finished image to the last). Records of every run are compared with
the first run's, timing columns aside.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path


def _run(data, out, model, workers):
    from segsem_lite.batch import RECORD_FIELDS, extract_dataset
    from segsem_lite.engine import Engine, ModelRef

    stamps = []
    engine = Engine(workers=workers)
    t0 = time.perf_counter()
    # the engine yields per image; wrap its map to time each finished image
    original = Engine.map

    def timed(self, *a, **k):
        for item in original(self, *a, **k):
            stamps.append(time.perf_counter())
            yield item

    Engine.map = timed
    try:
        extract_dataset(data, out, model=ModelRef(model), engine=engine, progress=False)
    finally:
        Engine.map = original
    total = time.perf_counter() - t0
    n = len(stamps)
    steady = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else float("nan")
    keys = [f for f in RECORD_FIELDS if not f.startswith("ms_")]
    with open(Path(out) / "records.csv", newline="") as fh:
        records = [{k: r[k] for k in keys} for r in csv.DictReader(fh)]
    return {"images": n, "seconds": total, "ips": n / total, "steady_ips": steady, "records": records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default")
    ap.add_argument("--synthetic", type=int, default=200, help="images of the synthetic set (0 skips it)")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    from segsem_lite.dataset import sample_dataset
    from segsem_lite.synth import write_dataset

    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"data_samples": sample_dataset()}
        if args.synthetic:
            per_case = max(1, args.synthetic // 10)
            sets[f"synthetic {per_case * 10}"] = write_dataset(Path(tmp) / "synth", n_per_case=per_case, seed=4242,
                                                              test_per_case=0)
        for name, data in sets.items():
            base = None
            for w in workers:
                r = _run(data, Path(tmp) / f"out-{name.replace(' ', '_')}-{w}", args.model, w)
                same = "reference" if base is None else ("same records" if r["records"] == base["records"]
                                                        else "RECORDS DIFFER")
                speed = "" if base is None else (f"  speed-up {r['ips'] / base['ips']:.2f}x overall, "
                                                 f"{r['steady_ips'] / base['steady_ips']:.2f}x steady")
                print(f"{name:>16}  {w} worker(s)  {r['images']} images in {r['seconds']:6.1f} s  "
                      f"{r['ips']:5.2f} img/s overall, {r['steady_ips']:5.2f} img/s steady  {same}{speed}",
                      flush=True)
                base = base or r


if __name__ == "__main__":
    main()
