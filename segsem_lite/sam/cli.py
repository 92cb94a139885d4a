"""``segsem finetune``, ``segsem adapt``, ``segsem calibrate`` and ``segsem models``: the SAM2 engine's subcommands."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_subcommands"]


def _cmd_finetune(args) -> int:
    import torch

    from .. import sam
    from .finetune import FinetuneConfig, finetune
    from .losses import LossWeights

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = FinetuneConfig(train=args.train, lr=args.lr, max_steps=args.steps, batch_size=args.batch_size,
                         val_every=args.val_every, patience=args.patience, augment=not args.no_augment,
                         seed=args.seed, save_every=args.save_every, schedule=args.schedule,
                         warmup_steps=args.warmup, box_prompts=args.box_prompts, extent_windows=args.extent_windows,
                         photometric=args.photometric, point_windows=args.point_windows,
                         weights=LossWeights(iou_reward=args.lambda_iou, count=args.lambda_count, epe=args.lambda_epe,
                                             iou_head=args.iou_head_weight))
    model, spec = sam.load_model(args.model, checkpoint=args.checkpoint, device="cpu")
    result = finetune(model, spec, args.dataset, args.out, config=cfg, device=args.device, resume=args.resume,
                      base_name=args.model, progress=not args.quiet, stop_after=args.stop_after)
    trainable = sum(c["trainable"] for c in result.parameter_counts.values())
    total = sum(c["total"] for c in result.parameter_counts.values())
    print(f"{result.steps} steps ({'stopped early' if result.stopped_early else 'done'}) in {result.wall_time_s:.0f} s; "
          f"trained {trainable:,} of {total:,} parameters ({args.train}); best validation IoU "
          f"{result.best_val_iou:.3f} at step {result.best_step}; checkpoint {result.best_checkpoint}")
    return 0


def _cmd_calibrate(args) -> int:
    from .calibrate import calibrate_model

    fit = calibrate_model(args.model, args.dataset, args.out, checkpoint=args.checkpoint, split=args.split,
                          device=args.device, per_bin=args.per_bin, progress=not args.quiet)
    print(f"calibrated the IoU head on {fit.n} candidates ({args.dataset}): mean absolute error of predicted "
          f"IoU {fit.mae_before:.3f} raw, {fit.mae_after:.3f} calibrated; {len(fit.x)} knots; wrote {args.out}")
    return 0


def _cmd_adapt(args) -> int:
    import torch

    from .adapt import adapt
    from .finetune import FinetuneConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = FinetuneConfig(train=args.train, lr=args.lr, max_steps=args.steps, seed=args.seed)
    rounds = adapt(args.images, args.out, model=args.model, checkpoint=args.checkpoint, rounds=args.rounds,
                   agree_iou=args.agree_iou, min_labels=args.min_labels, config=cfg, device=args.device,
                   progress=not args.quiet)
    for r in rounds:
        trained = (f"best validation IoU {r.best_val_iou:.3f}; {r.checkpoint}" if r.checkpoint else
                   f"fewer than {args.min_labels}: not trained")
        how = "classical masks that agree with themselves (the model agreed too rarely)" if r.bootstrap else \
            "where the model agrees with the classical path"
        print(f"round {r.round}: {r.agreed} pseudo-labels of {r.targets} targets in {r.images} images, {how}; "
              f"{trained}")
    if not any(r.checkpoint for r in rounds):
        print(f"segsem: error: {args.images}: no round had {args.min_labels} targets where the model and the "
              f"classical path agree (IoU >= {args.agree_iou}); nothing to adapt on")
        return 1
    print(f"adapted model: {args.out / 'best.pt'}")
    return 0


def _cmd_models(args) -> int:
    from .models import BUILTIN_MODELS, OFFICIAL_CONFIGS

    for name, path in BUILTIN_MODELS.items():
        print(f"{name:18s} built-in  {'shipped' if path.exists() else 'not shipped in this installation'}")
    print(f"{'mini-scratch':18s} built-in  random initialisation of the small configuration (a training start)")
    for name, cfg in OFFICIAL_CONFIGS.items():
        print(f"{name:18s} official  {cfg} (needs --checkpoint in Meta's format)")
    print(f"{'traditional':18s} no model  the standard Sauvola pipeline")
    return 0


def add_subcommands(sub) -> None:
    """Add ``finetune``, ``calibrate`` and ``models`` to the ``segsem`` parser."""
    p = sub.add_parser("finetune", help="fine-tune SAM2 on a dataset (encoders only: the paper's method)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--model", required=True, help="starting model: a built-in name, mini-scratch, a project "
                                                  "checkpoint, or an official config name with --checkpoint")
    p.add_argument("--checkpoint", help="checkpoint in Meta's format for an official config name")
    p.add_argument("--train", choices=("encoders", "decoder", "all"), default="encoders")
    p.add_argument("--out", required=True, type=Path, help="run folder (log.csv, best.pt, last.pt)")
    p.add_argument("--steps", type=int, default=1000, help="at most this many steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--stop-after", type=int, help="stop at this step; the schedule still spans --steps")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--patience", type=int, default=5, help="validations without improvement before stopping")
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable checkpoints")
    p.add_argument("--lambda-iou", type=float, default=0.5)
    p.add_argument("--lambda-count", type=float, default=0.5)
    p.add_argument("--lambda-epe", type=float, default=0.01)
    p.add_argument("--iou-head-weight", type=float, default=1.0,
                   help="weight of the IoU head's error in L_seg (SAM2's recipe: 1)")
    p.add_argument("--box-prompts", type=float, default=0.0, metavar="SHARE",
                   help="share of training prompts that add the design's bounding box as a box prompt; above 0 "
                        "the model also uses the box at inference (default: points only)")
    p.add_argument("--extent-windows", type=float, default=0.0, metavar="SHARE",
                   help="for targets without a design: share of training windows fitted to the target's mask "
                        "instead of centred on the point as at inference (default: %(default)s)")
    p.add_argument("--photometric", type=float, default=0.0, metavar="SHARE",
                   help="share of training windows re-imaged with other contrast, brightness, gamma, blur and "
                        "white shot noise, for images from other instruments (default: %(default)s)")
    p.add_argument("--point-windows", type=float, default=0.0, metavar="SHARE",
                   help="share of training targets with a design windowed around the point and prompted without "
                        "a box, as targets of images without a layout are at inference (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="no flips or rotations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("calibrate", help="fit the IoU head's calibration on labelled images the model did not "
                                         "train on; writes a checkpoint that carries it")
    p.add_argument("dataset", type=Path)
    p.add_argument("--model", required=True, help="a built-in name, a project checkpoint, or an official config "
                                                  "name with --checkpoint")
    p.add_argument("--checkpoint", help="checkpoint in Meta's format for an official config name")
    p.add_argument("--out", required=True, type=Path, help="the calibrated project checkpoint to write")
    p.add_argument("--split", help="only this split of the dataset")
    p.add_argument("--per-bin", type=int, default=20, help="candidates per bin of the fit (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("adapt", help="self-train a model on unlabelled images of a new domain: pseudo-labels "
                                     "where the classical path and the model agree")
    p.add_argument("images", type=Path, help="images as segsem extract takes them (masks beside them are not read)")
    p.add_argument("--model", required=True, help="starting model, as segsem finetune takes it")
    p.add_argument("--checkpoint", help="checkpoint in Meta's format for an official config name")
    p.add_argument("--out", required=True, type=Path, help="run folder (adapt.json, best.pt, round<k>/)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of pseudo-labelling and fine-tuning")
    p.add_argument("--agree-iou", type=float, default=0.8,
                   help="IoU a model candidate must reach against the classical mask (default: %(default)s)")
    p.add_argument("--min-labels", type=int, default=20, help="fewer pseudo-labels end the adaptation")
    p.add_argument("--train", choices=("encoders", "decoder", "all"), default="encoders")
    p.add_argument("--steps", type=int, default=1000, help="at most this many steps per round")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("models", help="list the models --model accepts")
    p.set_defaults(func=_cmd_models)
