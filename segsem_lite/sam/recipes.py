"""The paper's fine-tuning recipe against its alternatives, measured for the model card.

``python -m segsem_lite.sam.recipes --out RUNS --test DATASET [DATASET ...]`` fine-tunes the
same start (``mini-foundation``) on the same 50 images (data_samples' training split), with
the same seed, in each mode (``encoders``: the paper's, mask decoder frozen; ``decoder``;
``all``), with the four-term loss and early stopping on validation IoU, then runs every
result through the full SegSEM pipeline on each test dataset. The figures go to
``segsem_lite/models/paper_recipe.json``, which the model card shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..batch import evaluate_dataset
from ..dataset import Dataset, atomic_write, sample_dataset
from .finetune import TRAIN_MODES, FinetuneConfig
from .models import MODELS_DIR, load_model_file
from .predictor import SAM2Predictor
from .study import compare_train_modes, score_candidates

__all__ = ["RESULTS", "run_recipes"]

#: Where the measured comparison is kept (shipped with the package, read by the model card).
RESULTS = MODELS_DIR / "paper_recipe.json"


def _pipeline_figures(report) -> dict:
    s = report.summary
    return {"iou": s["segsem"]["iou"], "f1": s["segsem"]["f1"], "epe_px": s["segsem"]["epe_px"],
            "fallback_rate": s["fallback_rate"], "standard_iou": s["standard"]["iou"],
            "mean_predicted_iou": s.get("calibration", {}).get("mean_predicted"),
            "mean_true_iou": s.get("calibration", {}).get("mean_true")}


def run_recipes(out: str | Path, tests: list[str | Path], *, start: str = "mini-foundation", data: str | Path | None = None,
                config: FinetuneConfig = FinetuneConfig(), device: str = "cpu") -> dict:
    """Train each mode from ``start`` on ``data`` and score it; returns the results document."""
    data = Path(data) if data else sample_dataset()
    ds = Dataset(data)
    model, spec = load_model_file(start) if Path(start).suffix == ".pt" else _builtin(start)
    t0 = time.perf_counter()
    runs = compare_train_modes(model, spec, ds, out, modes=tuple(TRAIN_MODES), config=config, device=device,
                               base_name=start)
    doc = {"start": start, "data": str(data), "train_images": len(ds.split("train")),
           "config": config.to_dict(), "modes": {}}
    for mode, r in runs.items():
        trained, trained_spec = load_model_file(r.best_checkpoint)
        predictor = SAM2Predictor(trained, trained_spec, device=device, name=f"{start}+{mode}")
        trainable = sum(c["trainable"] for c in r.parameter_counts.values())
        entry = {"trainable_parameters": trainable, "steps": r.steps, "best_step": r.best_step,
                 "stopped_early": r.stopped_early, "val_iou": r.best_val_iou, "minutes": r.wall_time_s / 60,
                 "train_iou": float(score_candidates(predictor, ds, ds.split("train")[:10])["chosen_iou"].mean()),
                 "tests": {}}
        for test in tests:
            tds = Dataset(test)
            split = "test" if tds.split("test") else None
            report = evaluate_dataset(tds, model=predictor, split=split, progress=False)
            scores = score_candidates(predictor, tds, tds.split("test") if split else tds.stems)
            entry["tests"][Path(test).name] = {"targets": int(report.summary["n"]),
                                               "model_iou": float(scores["chosen_iou"].mean()),
                                               **_pipeline_figures(report)}
        doc["modes"][mode] = entry
    doc["wall_time_min_2_cores"] = (time.perf_counter() - t0) / 60
    return doc


def _builtin(name: str):
    from . import load_model

    return load_model(name, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="run folders, one per mode")
    ap.add_argument("--test", nargs="+", required=True, help="datasets to score on (their test split when they have one)")
    ap.add_argument("--start", default="mini-foundation")
    ap.add_argument("--data", default=None, help="training dataset (default: the shipped data_samples)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = FinetuneConfig(lr=args.lr, max_steps=args.steps, batch_size=args.batch_size, val_every=args.val_every,
                         patience=args.patience, seed=args.seed, save_every=args.val_every)
    doc = run_recipes(args.out, args.test, start=args.start, data=args.data, config=cfg)
    doc["command"] = "python -m segsem_lite.sam.recipes " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k not in ("results",) and v not in (None, 0))
    atomic_write(args.results, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2)))
    print(json.dumps({m: {k: v for k, v in e.items() if k != "tests"} | {"tests": e["tests"]}
                      for m, e in doc["modes"].items()}, indent=1))
    print(args.results)


if __name__ == "__main__":
    main()
