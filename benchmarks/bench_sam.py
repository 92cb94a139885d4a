"""SAM2 on this machine: image encode, predict and training-step time, and peak memory.

For the project's small configuration (trimmed Hiera trunk, width 128, 256 px input) and
for sam2.1_hiera_t (random weights, 1024 px), each measured in its own process so the
peak resident memory is its own.

Usage: python benchmarks/bench_sam.py [--threads 2] [--repeats 5] [--skip-tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _measure(config: str, threads: int, repeats: int, batch: int) -> dict:
    import numpy as np
    import torch

    from segsem_lite.sam import mini_spec
    from segsem_lite.sam.finetune import set_trainable
    from segsem_lite.sam.forward import SamForward
    from segsem_lite.sam.losses import segsem_loss
    from segsem_lite.sam.models import build_model, official_spec
    from segsem_lite.sam.forward import upsample_logits

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = mini_spec("mini") if config == "mini" else official_spec(config)
    model = build_model(spec)
    fwd = SamForward(model)
    s = spec.image_size
    x = torch.randn(1, 3, s, s)
    pts = torch.tensor([[[s / 2, s / 2]]])
    lab = torch.ones(1, 1, dtype=torch.int32)

    def timed(fn, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    with torch.no_grad():
        fwd.eval()
        fwd.encode(x)
        encode = timed(lambda: fwd.encode(x), repeats)
        feats = fwd.encode(x)
        predict = timed(lambda: fwd.decode(feats, pts, lab), repeats)
    set_trainable(model, "encoders")
    fwd.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    xb = torch.randn(batch, 3, s, s)
    target = torch.zeros(batch, s, s)
    target[:, s // 3: 2 * s // 3, s // 3: 2 * s // 3] = 1
    sdf = torch.zeros(batch, s, s)
    outside = torch.zeros(batch, s, s)

    def step():
        low, iou = fwd(xb, pts.repeat(batch, 1, 1), lab.repeat(batch, 1))
        loss, _ = segsem_loss(upsample_logits(low, s), target, iou, sdf=sdf, outside=outside)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    train = timed(step, max(2, repeats // 2))
    params = sum(p.numel() for p in model.parameters())
    return {"config": config, "image_size": s, "params": params, "threads": threads, "encode_s": encode,
            "predict_s": predict, "train_step_s": train, "batch": batch,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-tiny", action="store_true", help="only the small configuration")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.threads, args.repeats, args.batch)))
        return
    runs = [("mini", 1), ("mini", 4)] + ([] if args.skip_tiny else [("sam2.1_hiera_t", 1)])
    rows = []
    for config, batch in runs:
        out = subprocess.run([sys.executable, __file__, "--one", config, "--batch", str(batch), "--threads",
                              str(args.threads), "--repeats", str(args.repeats)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'config':16s} {'size':>5s} {'params':>11s} {'encode s':>9s} {'predict s':>10s} {'batch':>5s} "
          f"{'train step s':>12s} {'peak GB':>8s}")
    for r in rows:
        print(f"{r['config']:16s} {r['image_size']:5d} {r['params']:11,d} {r['encode_s']:9.3f} {r['predict_s']:10.3f} "
              f"{r['batch']:5d} {r['train_step_s']:12.3f} {r['peak_rss_gb']:8.2f}")
    print(f"({args.threads} threads, median of {args.repeats})")


if __name__ == "__main__":
    main()
