"""Selective fine-tuning of SAM2 (SegSEM III-B1): train the encoders, freeze the mask decoder.

Training calls the model's modules directly (the image predictor runs under ``no_grad``).
Each step samples, for every target in the batch, one random positive point inside its
mask, afresh every step: the paper's implicit augmentation. AdamW, early stopping on
validation IoU with patience, optional flips and 90-degree rotations, seeded, resumable,
and data parallel under ``torchrun`` (gloo on CPU, nccl on CUDA, hccl on NPU).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from ..dataset import Dataset, Target, atomic_write, interior_point, mask_bbox_xyxy
from ..errors import SegSEMError
from ..scale import to_unit_float
from .devices import autocast, distributed_backend, resolve_device
from .forward import SamForward, normalise, upsample_logits, window_for
from .losses import LossWeights, outside_region, segsem_loss, signed_distance
from .models import ModelSpec, clone_spec, module_parameter_counts, save_checkpoint

__all__ = ["TRAIN_MODES", "FinetuneConfig", "set_trainable", "TargetSampler", "finetune", "FinetuneResult"]

#: What each mode trains; everything else is frozen.
TRAIN_MODES = {
    "encoders": ("image_encoder", "sam_prompt_encoder"),
    "decoder": ("sam_mask_decoder",),
    "all": ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder", "no_mem_embed"),
}


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run.

    Attributes
    ----------
    train : {"encoders", "decoder", "all"}
        ``encoders`` is the paper's: image and prompt encoders trained, mask decoder frozen.
    lr : float
        AdamW learning rate (the paper: 1e-5 for SAM2-L).
    weight_decay : float
    schedule : {"constant", "cosine"}
        Learning rate after ``warmup_steps`` of linear warm-up.
    warmup_steps : int
    max_steps : int
        At most this many steps (the paper stopped early, under 1000).
    batch_size : int
        Targets per step (per process under torchrun).
    val_every : int
        Steps between validations.
    patience : int
        Validations without improvement before stopping; 0 never stops early.
    augment : bool
        Random flips and 90-degree rotations.
    jitter : float
        Random shift and scale of the input window, as a fraction of its side.
    seed : int
    save_every : int
        Steps between resumable checkpoints (``last.pt``, which also loads as a model).
    val_fraction : float
        Share of training images held out for validation when the dataset has no ``val`` split.
    max_val_targets : int
        Targets validated on, taken in turn from each validation image.
    box_prompts : float
        Share of training samples prompted with the design's bounding box as well as the
        point (0: points only). Above 0 the saved model uses the box at inference
        (:attr:`InputPolicy.box_prompt`) and validation prompts with it.
    box_jitter : float
        Random shift of each box side, as a fraction of the box's longer side (sigma).
    extent_windows : float
        For targets without a design, the share of training samples whose window is fitted
        to the target's mask, as if a design gave its extent. The rest are windowed as at
        inference, where only the point is known: centred on the point, ``window_px`` wide.
    photometric : float
        Share of training samples whose input window is re-imaged (:func:`photometric`):
        contrast, brightness and gamma changed, blurred and given white shot noise, so that
        the model meets the detector settings and noise of instruments other than the
        generator's (0: as the data is).
    point_windows : float
        Share of training samples whose design is ignored: windowed around the drawn point and
        prompted without a box, as :func:`segsem_lite.pipeline.segment_image` sees targets of
        images without a layout (found by discovery, or given as points).
    weights : LossWeights
    """

    train: str = "encoders"
    lr: float = 1e-5
    weight_decay: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    max_steps: int = 1000
    batch_size: int = 4
    val_every: int = 50
    patience: int = 5
    augment: bool = True
    jitter: float = 0.1
    seed: int = 0
    save_every: int = 50
    val_fraction: float = 0.2
    max_val_targets: int = 64
    box_prompts: float = 0.0
    box_jitter: float = 0.03
    extent_windows: float = 0.0
    photometric: float = 0.0
    point_windows: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.train not in TRAIN_MODES:
            raise SegSEMError(f"train={self.train!r}: expected one of {', '.join(TRAIN_MODES)}")
        if self.schedule not in ("constant", "cosine"):
            raise SegSEMError(f"schedule={self.schedule!r}: expected 'constant' or 'cosine'")
        for name in ("max_steps", "batch_size", "val_every", "save_every"):
            if getattr(self, name) < 1:
                raise SegSEMError(f"{name}={getattr(self, name)!r}: expected at least 1")
        if not self.lr > 0:
            raise SegSEMError(f"lr={self.lr!r}: expected a positive learning rate")
        for name in ("box_prompts", "extent_windows", "photometric", "point_windows"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SegSEMError(f"{name}={getattr(self, name)!r}: expected a share in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        d = dict(d)
        d["weights"] = LossWeights(**d.get("weights", {}))
        return cls(**d)


def set_trainable(model, mode: str) -> dict[str, dict[str, int]]:
    """Freeze everything but the modules of ``mode``; return the parameter counts per module."""
    if mode not in TRAIN_MODES:
        raise SegSEMError(f"train={mode!r}: expected one of {', '.join(TRAIN_MODES)}")
    keep = TRAIN_MODES[mode]
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] in keep)
    return module_parameter_counts(model)


@dataclass
class _Item:
    image: np.ndarray
    mask: np.ndarray  # bool, the target's instance
    target: Target


class TargetSampler:
    """Training and validation samples from a dataset's targets.

    Parameters
    ----------
    items : list
        (image, instance mask, target) of each target.
    spec : ModelSpec
        Input size and policy.
    """

    def __init__(self, items: list[_Item], spec: ModelSpec, *, where: str = "the dataset's images"):
        if not items:
            raise SegSEMError(f"no training targets: {where} have no masked target clear of the image border")
        self.items, self.spec = items, spec

    @classmethod
    def from_dataset(cls, ds: Dataset, stems: list[str], spec: ModelSpec, *,
                     role: str = "training") -> "TargetSampler":
        items = []
        for stem in stems:
            image = ds.load_image(stem)
            labels = ds.load_mask(stem)
            if labels is None:
                raise SegSEMError(f"{ds.images[stem]}: fine-tuning needs a mask for every training image")
            for t in ds.targets(stem, mask=labels, shape=image.shape, border=False):
                items.append(_Item(image, labels == t.label, t))
        names = ", ".join(stems[:3]) + (", ..." if len(stems) > 3 else "")
        return cls(items, spec, where=f"the {role} images ({names}) of {ds.root}")

    def __len__(self) -> int:
        return len(self.items)

    def _window(self, item: _Item, rng: np.random.Generator | None, jitter: float, *, region, point_xy=None,
                extent: bool = True):
        """The input window: around ``region`` (the design's extent, or None), or the mask's
        with ``extent`` when it is None, else centred on ``point_xy`` (the target's prompt by
        default)."""
        if region is None and extent:
            region = mask_bbox_xyxy(item.mask)
        point = item.target.prompt_xy if point_xy is None else point_xy
        win = window_for(item.image.shape, self.spec.image_size, self.spec.input, point_xy=point, region_xyxy=region)
        if rng is not None and jitter > 0 and self.spec.input.mode == "window":
            side = int(round(win.side * np.exp(rng.uniform(-jitter, jitter))))
            dx, dy = rng.uniform(-jitter, jitter, 2) * win.side
            cx, cy = win.x0 + win.side / 2 + dx, win.y0 + win.side / 2 + dy
            win = type(win)(int(round(cx - side / 2)), int(round(cy - side / 2)), side, win.size)
        return win

    def sample(self, item: _Item, *, rng: np.random.Generator | None, augment: bool = False, jitter: float = 0.0,
               point_xy: tuple[float, float] | None = None, box: bool = False,
               box_jitter: float = 0.0, extent: bool = False, reimage: bool = False,
               design: bool = True) -> dict[str, np.ndarray]:
        """One training example: input image, target at input size, one positive point and,
        with ``box``, the design's bounding box (NaN where the design is unknown).

        With ``rng`` the point is drawn uniformly inside the target (afresh each call) and
        the box sides shift by ``box_jitter``; without, ``point_xy`` or the target's most
        interior point is used. A target without a design is windowed as at inference,
        around its point, unless ``extent`` fits the window to its mask; with ``design`` False a
        target with a design is too, and gets no box. With ``reimage`` (and ``rng``) the window
        goes through :func:`photometric`.
        """
        s = self.spec.image_size
        region = item.target.design.bbox_xyxy() if design else None
        around_point = region is None and not extent
        drawn = None
        if around_point and rng is not None:  # draw the point first: the window follows it
            drawn = _draw_point(item.mask, rng)
        win = self._window(item, rng, jitter, region=region, point_xy=drawn if drawn is not None else point_xy,
                           extent=extent)
        img = win.crop(item.image)
        tgt = cv2.resize(win.crop(item.mask.astype(np.uint8), fill=0).astype(np.float32), (s, s),
                         interpolation=cv2.INTER_AREA) > 0.5
        if not tgt.any():  # the target vanished at this scale: fall back to its interior point
            tgt[int(s / 2), int(s / 2)] = True
        point = win.to_input(drawn).ravel() if drawn is not None else None
        if point is not None and not tgt[int(np.clip(point[1], 0, s - 1)), int(np.clip(point[0], 0, s - 1))]:
            point = None  # on a sliver the resize dropped: draw again, at input size
        if point is None and rng is not None:
            point = np.array(_draw_point(tgt, rng)) + 0.5  # input coordinates: pixel centres at +0.5
        elif point is None:
            point = win.to_input(point_xy if point_xy is not None else item.target.prompt_xy).ravel()
            if not tgt[int(np.clip(point[1], 0, s - 1)), int(np.clip(point[0], 0, s - 1))]:
                x, y = interior_point(tgt)
                point = np.array([x + 0.5, y + 0.5])
        corners = np.full((2, 2), np.nan)
        if box and region is not None:
            xyxy = np.asarray(region, dtype=np.float64)
            if rng is not None and box_jitter > 0:
                xyxy = xyxy + rng.normal(0.0, box_jitter * max(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]), 4)
            corners = win.to_input(xyxy.reshape(2, 2))
        if reimage and rng is not None:
            img = photometric(img, rng)
        x = normalise(img, s).numpy()
        if augment and rng is not None:
            k = int(rng.integers(4))
            flip = bool(rng.integers(2))
            x, tgt, pts = _rot_flip(x, tgt, np.vstack([point, corners]), k, flip, s)
            point, corners = pts[0], np.vstack([pts[1:].min(0), pts[1:].max(0)])
        return {"image": x, "target": tgt, "point": point.astype(np.float32), "box": corners.astype(np.float32)}


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One input window as another instrument might have imaged it, as float32 in [0, 1].

    The window's contrast is scaled by 0.15-1.5 about its mean and its brightness shifted
    (within +-0.2), a gamma of 0.6-1.6 applied, a Gaussian blur of 0.3-1.5 px half the time,
    then white noise whose variance follows the signal (shot noise), with a standard
    deviation at mid grey drawn log-uniformly from 0.01 to 0.25. The draws are wide on
    purpose: a model trained on one generator's detector meets others' (white pixel noise
    far above the material contrast, contrast a tenth of the range) on real tools.

    Parameters
    ----------
    image : (M, N) ndarray
        8- or 16-bit or float in [0, 1].
    rng : numpy.random.Generator

    Returns
    -------
    (M, N) float32 ndarray
    """
    x = to_unit_float(image).astype(np.float64)
    mean = float(x.mean())
    x = mean + (x - mean) * np.exp(rng.uniform(np.log(0.15), np.log(1.5))) + rng.uniform(-0.2, 0.2)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.5))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(0.25)))
    x = x + rng.standard_normal(x.shape) * sigma * np.sqrt(np.clip(x, 0.02, None) / 0.5)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _draw_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A point (x, y) drawn uniformly inside a mask: a random pixel, jittered within it."""
    rr, cc = np.nonzero(mask)
    i = int(rng.integers(len(rr)))
    return cc[i] + rng.uniform(-0.5, 0.5), rr[i] + rng.uniform(-0.5, 0.5)


def _rot_flip(x: np.ndarray, tgt: np.ndarray, points: np.ndarray, k: int, flip: bool, s: int):
    """Rotate by k*90 degrees counter-clockwise and flip left-right, image, mask and points (N, 2) (x, y) alike."""
    px, py = np.array(points, dtype=np.float64).reshape(-1, 2).T
    for _ in range(k):
        x = np.rot90(x, 1, axes=(1, 2))
        tgt = np.rot90(tgt, 1)
        px, py = py, s - px  # rot90 CCW: (x, y) -> (y, s - x) in continuous input coordinates
    if flip:
        x = x[:, :, ::-1]
        tgt = tgt[:, ::-1]
        px = s - px
    return np.ascontiguousarray(x), np.ascontiguousarray(tgt), np.stack([px, py], 1)


def _prompts(samples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Prompt tokens (B, T, 2) and labels (B, T): the point, after the box corners (labels 2
    and 3) when any sample has a box; a sample without one gets padding tokens (label -1)."""
    points = np.stack([s["point"] for s in samples])[:, None, :]
    labels = np.ones((len(samples), 1), np.int32)
    boxes = np.stack([s.get("box", np.full((2, 2), np.nan, np.float32)) for s in samples])
    has = ~np.isnan(boxes).any(axis=(1, 2))
    if not has.any():
        return points, labels
    box_labels = np.where(has[:, None], [[2, 3]], [[-1, -1]]).astype(np.int32)
    return (np.concatenate([np.nan_to_num(boxes), points], 1).astype(np.float32),
            np.concatenate([box_labels, labels], 1))


def _collate(samples: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    targets = np.stack([s["target"] for s in samples])
    points, labels = _prompts(samples)
    return {
        "images": torch.from_numpy(np.stack([s["image"] for s in samples])).to(device),
        "targets": torch.from_numpy(targets.astype(np.float32)).to(device),
        "points": torch.from_numpy(points).to(device),
        "labels": torch.from_numpy(labels).to(device),
        "sdf": torch.from_numpy(np.stack([signed_distance(t) for t in targets])).to(device),
        "outside": torch.from_numpy(np.stack([outside_region(t) for t in targets])).to(device),
    }


def _lr_at(step: int, cfg: FinetuneConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


def _spread(items: list[_Item], limit: int) -> list[_Item]:
    """At most ``limit`` items, taken in turn from each image (first target of every image,
    then the second, ...), so that one image of hundreds of contacts does not stand for all."""
    by_image: dict[str, list[_Item]] = {}
    for it in items:
        by_image.setdefault(it.target.stem, []).append(it)
    out: list[_Item] = []
    depth = 0
    while len(out) < min(limit, len(items)):
        out.extend(group[depth] for group in by_image.values() if depth < len(group))
        depth += 1
    return out[:limit]


@torch.no_grad()
def evaluate_sampler(fwd: SamForward, sampler: TargetSampler, device: torch.device, *, batch_size: int = 8,
                     limit: int | None = None, box: bool = False) -> dict[str, float]:
    """Validation at the model's input: IoU of the candidate with the highest predicted IoU
    (what the gate looks at first), the best-of-K IoU, and the mean predicted IoU; with
    ``box``, prompted with the design's bounding box as well. With ``limit``, at most that
    many targets, taken in turn from each image (:func:`_spread`)."""
    was = fwd.training
    fwd.eval()
    items = _spread(sampler.items, limit) if limit else sampler.items
    chosen, best, pred = [], [], []
    for i in range(0, len(items), batch_size):
        batch = _collate([sampler.sample(it, rng=None, box=box) for it in items[i:i + batch_size]], device)
        with autocast(device):
            low, iou = fwd(batch["images"], batch["points"], batch["labels"])
        logits = upsample_logits(low.float(), fwd.size)
        t = batch["targets"][:, None].bool()
        p = logits > 0
        ious = ((p & t).flatten(2).sum(-1) / (p | t).flatten(2).sum(-1).clamp(min=1)).float()
        top = iou.float().argmax(1)
        chosen.extend(ious.gather(1, top[:, None]).squeeze(1).tolist())
        best.extend(ious.max(1).values.tolist())
        pred.extend(iou.float().gather(1, top[:, None]).squeeze(1).tolist())
    fwd.train(was)
    return {"val_iou": float(np.mean(chosen)), "val_iou_best_of_k": float(np.mean(best)),
            "val_pred_iou": float(np.mean(pred))}


@dataclass
class FinetuneResult:
    """What a run produced: the run folder, the best checkpoint, the log rows, the counts."""

    run_dir: Path
    best_checkpoint: Path
    best_val_iou: float
    best_step: int
    steps: int
    stopped_early: bool
    log: list[dict]
    parameter_counts: dict
    wall_time_s: float
    #: The calibration fitted into best.pt on the validation images (n, mae_before, mae_after), or why it was
    #: skipped; None on other ranks.
    calibration: dict | None = None


LOG_FIELDS = ["step", "lr", "seg", "iou_reward", "count", "epe", "total", "val_iou", "val_iou_best_of_k",
              "val_pred_iou", "seconds"]


def _split_stems(ds: Dataset, cfg: FinetuneConfig) -> tuple[list[str], list[str]]:
    """Training and validation images: the ``val`` split, or a seeded share of ``train``."""
    has_split = ds.meta is not None and "split" in ds.meta.columns
    train = ds.split("train") if has_split else ds.stems
    val = ds.split("val") if has_split else []
    if not val and len(train) > 1:
        order = [str(s) for s in np.random.default_rng(cfg.seed).permutation(train)]
        n_val = max(1, int(round(cfg.val_fraction * len(order))))
        val, train = sorted(order[:n_val]), sorted(order[n_val:])
    if not train:
        raise SegSEMError(f"{ds.root}: no training images (split 'train' is empty)")
    return train, val


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def finetune(
    model,
    spec: ModelSpec,
    dataset: str | Path | Dataset,
    run_dir: str | Path,
    *,
    config: FinetuneConfig = FinetuneConfig(),
    device: str = "auto",
    resume: bool = False,
    base_name: str = "",
    progress: bool = True,
    train_stems: list[str] | None = None,
    val_stems: list[str] | None = None,
    on_validate: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
) -> FinetuneResult:
    """Fine-tune a SAM2 model on a dataset's targets.

    Parameters
    ----------
    model : SAM2Base
        The starting weights (modified in place).
    spec : ModelSpec
        The model's configuration; saved into the checkpoints.
    dataset : path or Dataset
        Its ``train`` split trains, its ``val`` split (or a seeded share of ``train``) validates.
    run_dir : path
        ``log.csv``, ``best.pt``, ``last.pt`` and ``run.json`` go here.
    config : FinetuneConfig
    device : str
    resume : bool
        Continue from ``run_dir/last.pt``: the same steps are not run twice and the log keeps
        its finished rows.
    base_name : str
        Name of the starting model, for the checkpoint's metadata.
    progress : bool
    train_stems, val_stems : list of str, optional
        Override the split.
    on_validate : callable, optional
        Called with each validation's log row.
    stop_after : int, optional
        Stop at this step, leaving the schedule (set by ``config.max_steps``) as it is:
        the first stage of a longer schedule.

    Returns
    -------
    FinetuneResult
    """
    from tqdm.auto import tqdm

    rank, world = _dist_info()
    dev = resolve_device(device)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend=distributed_backend(dev))
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not ds.has_masks:
        raise SegSEMError(f"{ds.root}: fine-tuning needs ground truth, but there is no masks/ folder")
    train_s, val_s = _split_stems(ds, config)
    train_s = train_stems if train_stems is not None else train_s
    val_s = val_stems if val_stems is not None else val_s
    if config.box_prompts > 0 and not spec.input.box_prompt:
        spec = ModelSpec.from_dict({**spec.to_dict(), "input": {**spec.to_dict()["input"], "box_prompt": True}})
    if spec.iou_calibration:  # the start's calibration describes the start's IoU head, not the trained one
        spec = clone_spec(spec, iou_calibration={})
    use_box = spec.input.box_prompt
    train_set = TargetSampler.from_dataset(ds, train_s, spec)
    val_set = TargetSampler.from_dataset(ds, val_s, spec, role="validation") if val_s else train_set
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    counts = set_trainable(model, config.train)
    model.to(dev)
    fwd = SamForward(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    net: Any = fwd
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(fwd, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)

    step, best_val, best_step, bad = 0, -1.0, 0, 0
    rng = np.random.default_rng([config.seed, rank])
    last = run_dir / "last.pt"
    log_rows: list[dict] = []
    log_path = run_dir / "log.csv"
    wall0 = 0.0
    if resume and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        saved = FinetuneConfig.from_dict(state["config"]).to_dict() if state.get("config") else {}
        if saved != config.to_dict():  # settings added since the run began count at their defaults
            changed = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v)
            raise SegSEMError(f"{last}: cannot resume with different settings ({', '.join(changed)}); "
                              "use a new run folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best_val, best_step, bad = state["step"], state["best_val"], state["best_step"], state["bad"]
        rng.bit_generator.state = state["rng"][rank] if rank < len(state["rng"]) else rng.bit_generator.state
        torch.set_rng_state(state["torch_rng"])
        wall0 = state.get("wall_time_s", 0.0)
        if log_path.exists():
            with open(log_path, newline="") as fh:
                log_rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    stopped_early = bool(resume and last.exists() and config.patience and bad >= config.patience)
    if rank == 0:
        atomic_write(log_path, lambda tmp: _write_log(tmp, log_rows))
        (run_dir / "run.json").write_text(json.dumps({
            "base": base_name, "dataset": str(ds.root), "train_images": len(train_s), "val_images": len(val_s),
            "train_targets": len(train_set), "val_targets": len(val_set), "config": config.to_dict(),
            "parameters": counts, "world_size": world}, indent=2))

    def run_spec(metrics: dict | None = None) -> ModelSpec:
        """The spec of the model at this step: the start's, with this run's training metadata."""
        meta = {**spec.metadata, "base": base_name, "train": config.train, "dataset": str(ds.root),
                "step": step, **{k: round(v, 4) for k, v in (metrics or {}).items()}}
        return clone_spec(spec, metadata=meta)

    def save_last() -> None:
        if rank != 0:
            return
        rng_states = [rng.bit_generator.state]
        obj = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": opt.state_dict(), "step": step, "best_val": best_val, "best_step": best_step,
               "bad": bad, "rng": rng_states, "torch_rng": torch.get_rng_state(), "config": config.to_dict(),
               "wall_time_s": wall0 + (time.perf_counter() - t_start)}
        obj["segsem"] = json.dumps(run_spec().to_dict())  # so the last step is a model too: --model RUN/last.pt
        atomic_write(last, lambda tmp: torch.save(obj, tmp))

    def save_best(metrics: dict) -> None:
        save_checkpoint(run_dir / "best.pt", model, run_spec(metrics))

    t_start = time.perf_counter()
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress or rank != 0, desc=f"finetune {config.train}")
    fh = open(log_path, "a", newline="") if rank == 0 else None
    writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS) if fh else None
    try:
        end = min(config.max_steps, stop_after) if stop_after else config.max_steps
        while step < end and not stopped_early:
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, config)
            picks = rng.integers(len(train_set), size=config.batch_size)
            boxed = rng.random(config.batch_size) < config.box_prompts
            extent = (rng.random(config.batch_size) < config.extent_windows if config.extent_windows
                      else np.zeros(config.batch_size, bool))  # no draw: runs without it replay as before
            reimage = (rng.random(config.batch_size) < config.photometric if config.photometric
                       else np.zeros(config.batch_size, bool))
            designed = (rng.random(config.batch_size) >= config.point_windows if config.point_windows
                        else np.ones(config.batch_size, bool))
            batch = _collate([train_set.sample(train_set.items[i], rng=rng, augment=config.augment,
                                               jitter=config.jitter, box=bool(b), box_jitter=config.box_jitter,
                                               extent=bool(e), reimage=bool(r), design=bool(d))
                              for i, b, e, r, d in zip(picks, boxed, extent, reimage, designed)], dev)
            with autocast(dev):
                low, iou = net(batch["images"], batch["points"], batch["labels"])
            logits = upsample_logits(low.float(), fwd.size)
            loss, terms = segsem_loss(logits, batch["targets"], iou.float(), sdf=batch["sdf"],
                                      outside=batch["outside"], weights=config.weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            row = {"step": step, "lr": f"{opt.param_groups[0]['lr']:.3g}", **{k: f"{v:.5f}" for k, v in terms.items()},
                   "seconds": f"{wall0 + time.perf_counter() - t_start:.1f}"}
            if step % config.val_every == 0 or step == end:
                stop = torch.zeros(1)
                if rank == 0:
                    metrics = evaluate_sampler(fwd, val_set, dev, limit=config.max_val_targets, box=use_box)
                    row.update({k: f"{v:.5f}" for k, v in metrics.items()})
                    if metrics["val_iou"] > best_val:
                        best_val, best_step, bad = metrics["val_iou"], step, 0
                        save_best(metrics)
                    else:
                        bad += 1
                    bar.set_postfix(val_iou=f"{metrics['val_iou']:.3f}", best=f"{best_val:.3f}")
                    if config.patience and bad >= config.patience:
                        stop[0] = 1
                    if on_validate:
                        on_validate(row)
                if world > 1:
                    import torch.distributed as dist

                    dist.broadcast(stop, src=0)
                stopped_early = bool(stop[0])
            if writer:
                writer.writerow(row)
                fh.flush()
            log_rows.append(row)
            if step % config.save_every == 0 or step == end or stopped_early:
                save_last()
    finally:
        bar.close()
        if fh:
            fh.close()
    if rank == 0 and not (run_dir / "best.pt").exists():
        metrics = evaluate_sampler(fwd, val_set, dev, limit=config.max_val_targets, box=use_box)
        best_val, best_step = metrics["val_iou"], step
        save_best(metrics)
    calibration = None
    if rank == 0:
        # best.pt is made ready for the gate: its IoU head calibrated on the run's validation images
        from .calibrate import calibrate_model

        try:
            fit = calibrate_model(str(run_dir / "best.pt"), ds, run_dir / "best.pt", stems=val_s, device="cpu",
                                  data=f"{ds.root} (validation images of the run)")
            calibration = {"n": fit.n, "mae_before": round(fit.mae_before, 4), "mae_after": round(fit.mae_after, 4)}
        except SegSEMError as exc:  # too few validation candidates: best.pt stays uncalibrated, and says why
            calibration = {"skipped": str(exc)}
        info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
        outcome = {"best_val_iou": best_val, "best_step": best_step, "steps": step, "stopped_early": stopped_early,
                   "wall_time_s": round(wall0 + time.perf_counter() - t_start, 1)}
        (run_dir / "run.json").write_text(json.dumps({**info, **outcome, "calibration": calibration}, indent=2))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return FinetuneResult(run_dir=run_dir, best_checkpoint=run_dir / "best.pt", best_val_iou=best_val,
                          best_step=best_step, steps=step, stopped_early=stopped_early, log=log_rows,
                          parameter_counts=counts, wall_time_s=wall0 + time.perf_counter() - t_start,
                          calibration=calibration)


def _write_log(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
