"""The few-shot recipe on a domain the model never saw: training modes and seeds, run as a user runs them.

For every (mode, learning rate, seed) this runs ``segsem finetune DATA --model default
--train MODE --lr LR --seed SEED --out ROOT/<mode>_lr<lr>_s<seed>`` (resumed when the run
folder exists, skipped when it finished) and then ``segsem evaluate DATA --split test
--model RUN/best.pt``. The zero-shot shipped model is evaluated the same way once. The table
compares each with the best classical path (standard + edge placement) on the same targets.

DATA is a labelled dataset the shipped model never trained on, e.g. the second renderer with
its design: ``segsem synth --renderer independent --design --n-per-case 8 --test-per-case 3
--size 256 --seed 4242 --out DATA`` (50 training, 30 test images).

Usage: python benchmarks/bench_fewshot.py DATA --out ROOT [--modes encoders decoder all]
       [--seeds 0 1 2] [--lrs 3e-4] [--threads 1]

Writes ROOT/fewshot.csv (one row per run) and prints the table with the mean and spread over
seeds per (mode, lr).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"{' '.join(cmd)}: exit {rc} (see {log})")


def _evaluate(data: str, model: str, out: Path, threads: int, log: Path) -> dict:
    if not (out / "summary.json").exists():
        _run([sys.executable, "-m", "segsem_lite.cli", "evaluate", data, "--model", model, "--split", "test",
              "--out", str(out), "--quiet"], log)
    s = json.loads((out / "summary.json").read_text())
    cal = s.get("calibration") or {}
    return {"targets": s["n"], "standard_ep_iou": round(s["standard_ep"]["iou"], 4),
            "segsem_iou": round(s["segsem"]["iou"], 4), "segsem_epe_px": round(s["segsem"]["epe_px"], 3),
            "minus_best_classical": round(s["segsem_minus_best_classical"]["iou"], 4),
            "fallback_rate": round(s["fallback_rate"], 4),
            "top_true_iou": round(cal.get("mean_true", float("nan")), 4),
            "calibration_mae": round(cal.get("mean_abs_error", float("nan")), 4)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--modes", nargs="+", default=["encoders", "decoder", "all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--lrs", nargs="+", default=["3e-4"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "bench_fewshot.log"
    rows = [{"run": "zero-shot", "mode": "-", "lr": "-", "seed": "-", "minutes": 0.0, "best_step": "-",
             "best_val_iou": "-", **_evaluate(args.data, "default", root / "eval_zero_shot", args.threads, log)}]
    for lr in args.lrs:
        for mode in args.modes:
            for seed in args.seeds:
                name = f"{mode}_lr{lr}_s{seed}"
                run = root / name
                info = run / "run.json"
                done = info.exists() and "calibration" in json.loads(info.read_text())
                if not done:
                    t0 = time.perf_counter()
                    _run([sys.executable, "-m", "segsem_lite.cli", "finetune", args.data, "--model", "default",
                          "--train", mode, "--lr", lr, "--seed", str(seed), "--threads", str(args.threads),
                          "--out", str(run), "--quiet", *(["--resume"] if (run / "last.pt").exists() else [])],
                         log)
                    print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
                r = json.loads(info.read_text())
                rows.append({"run": name, "mode": mode, "lr": lr, "seed": seed,
                             "minutes": round(r.get("wall_time_s", float("nan")) / 60, 2),
                             "best_step": r.get("best_step"), "best_val_iou": round(r.get("best_val_iou", 0), 4),
                             **_evaluate(args.data, str(run / "best.pt"), root / f"eval_{name}", args.threads, log)})
                with (root / "fewshot.csv").open("w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
    keys = ["segsem_iou", "minus_best_classical", "fallback_rate", "top_true_iou", "calibration_mae", "minutes"]
    print(f"{'mode':10s} {'lr':>6s} {'n':>2s} " + " ".join(f"{k:>22s}" for k in keys))
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["mode"], row["lr"]), []).append(row)
    for (mode, lr), rs in groups.items():
        cells = []
        for k in keys:
            v = [float(x[k]) for x in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):>14.3f} +- {sd:5.3f}")
        print(f"{mode:10s} {lr:>6s} {len(rs):2d} " + " ".join(cells))
    print(f"best classical path (standard + edge placement) on the same targets: {rows[0]['standard_ep_iou']:.3f}")


if __name__ == "__main__":
    main()
