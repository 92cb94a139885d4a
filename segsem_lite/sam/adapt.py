"""Adaptation without labels: self-training on unlabelled images of a new domain.

``segsem adapt IMAGES --model default --out RUN`` runs :func:`adapt`. Each round:

1. The targets of every image are found as ``segsem extract`` finds them (a layout's
   polygons, prompts, or discovery); masks beside the images, if any, are never read.
2. Each target is segmented twice: by the classical path (standard + edge placement) and
   by the current model (its three candidates). Where one candidate agrees with the
   classical mask (IoU at least ``agree_iou``), the classical mask becomes a pseudo-label.
   Targets that touch the border, or whose classical path flagged or failed, are skipped.
   When the model agrees on fewer than ``min_labels`` targets (a domain too far from what
   it knows, as is usual for the first round), the round starts instead from the
   classical masks that agree with themselves: the region before edge placement and
   after it at IoU ``agree_iou`` or more, and within 1.25 times their design's area when
   there is a design. The round is recorded as ``bootstrap``.
3. ``RUN/round<k>/data`` is a dataset of the pseudo-labels, and ``RUN/round<k>/run`` a
   ``segsem finetune`` run on it from the current model (calibrated on its validation share,
   as any fine-tuning run). Its ``best.pt`` is the next round's model.

``RUN/best.pt`` is the last round's model and ``RUN/adapt.json`` records every round. A
round already finished is not run again.

The pseudo-labels are only as good as the classical path where the model agrees with it:
adaptation teaches the model the new domain's appearance on the targets both already get
right, so that its candidates there, and the calibration of its IoU head, carry over.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..dataset import Dataset, atomic_write, write_image
from ..errors import SegSEMError
from ..metrics import iou
from .finetune import FinetuneConfig

__all__ = ["AdaptRound", "pseudo_labels", "adapt"]


@dataclass(frozen=True)
class AdaptRound:
    """One round of :func:`adapt`.

    Attributes
    ----------
    round : int
    targets : int
        Targets the classical path finished cleanly, clear of the border.
    agreed : int
        Of those, targets where a model candidate agreed: the pseudo-labels.
    bootstrap : bool
        The model agreed too rarely: the pseudo-labels are the classical masks that agree
        with themselves (see the module's description).
    images : int
        Images with at least one pseudo-label.
    best_val_iou : float or None
        The fine-tuning run's best validation IoU (on pseudo-labels); None when the round
        had too few pseudo-labels to train.
    checkpoint : str or None
        The round's model.
    """

    round: int
    targets: int
    agreed: int
    images: int
    bootstrap: bool
    best_val_iou: float | None
    checkpoint: str | None


def pseudo_labels(images: str | Path | Dataset, predictor, out: str | Path, *, agree_iou: float = 0.8,
                  config: PipelineConfig | None = None, progress: bool = True) -> tuple[int, int, int]:
    """Write a dataset of pseudo-labels: classical masks that a model candidate agrees with.

    Parameters
    ----------
    images : path or Dataset
        Unlabelled images as ``segsem extract`` takes them; masks beside them are ignored.
    predictor : SAM2Predictor or None
        The model whose candidates must agree; None for a bootstrap: the classical
        masks that agree with themselves (before and after edge placement, and with the
        design's area when there is a design).
    out : path
        ``images/``, ``masks/`` (the pseudo-labels as instances) and ``meta.csv`` are written
        here, and ``skipped.csv``: each image that could not be read, with why.
    agree_iou : float
        The IoU a candidate must reach against the classical mask.

    Returns
    -------
    (targets, agreed, images)
        Targets considered, pseudo-labels written, images with at least one.
    """
    from tqdm.auto import tqdm

    from ..batch import _load, _write_rows
    from ..pipeline import segment_image

    ds = images if isinstance(images, Dataset) else Dataset(images)
    out = Path(out)
    config = config or PipelineConfig()
    classical = replace(config, edge=replace(config.edge, enabled=True, standard=True))
    for sub in ("images", "masks"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    n_targets = n_agreed = 0
    rows, skipped = [], []
    for stem in tqdm(ds.stems, desc="pseudo-labels", disable=not progress):
        try:
            got = _load(ds, stem)
        except SegSEMError as exc:  # a bad image never stops the others
            skipped.append({"stem": stem, "reason": str(exc)})
            continue
        image = got.image
        targets = got.targets
        if got.mask is not None:  # never the user's masks: the targets as an unlabelled image gives them
            targets = ds.targets(stem, mask=None, shape=image.shape, image=image, pixel_size_nm=got.pixel_size_nm,
                                 placement=got.placement)
        targets = [t for t in targets if not t.touches_border]
        if not targets:
            continue
        base = segment_image(image, targets, model=None, config=classical, field=got.field)
        if predictor is None:
            plain = replace(classical, edge=replace(classical.edge, enabled=False))
            model = segment_image(image, targets, model=None, config=plain, field=got.field)
        else:
            model = segment_image(image, targets, model=predictor, config=config, keep_candidates=True,
                                  field=got.field)
        labels = np.zeros(image.shape, np.uint16)
        k = 0
        for t, c, m in zip(targets, base, model):
            if isinstance(c, SegSEMError) or c.flag or not c.mask.any():
                continue
            n_targets += 1
            if predictor is None:
                area = t.design.area_px if t.design is not None else None
                if area and abs(np.log(c.mask.sum() / area)) > np.log(1.25):
                    continue
                cands = None if isinstance(m, SegSEMError) else [m.mask]
            else:
                cands = getattr(m, "candidates", None)
            if cands is None or not any(iou(cand, c.mask) >= agree_iou for cand in cands):
                continue
            free = c.mask & (labels == 0)
            if not free.any():  # wholly inside an earlier pseudo-label
                continue
            k += 1
            labels[free] = k
        n_agreed += k
        if k:
            src = ds.images[stem]
            shutil.copy2(src, out / "images" / src.name)
            write_image(out / "masks" / f"{stem}.png", labels if k > 255 else labels.astype(np.uint8))
            rows.append({"stem": stem, "pixel_size_nm": f"{got.pixel_size_nm:g}" if got.pixel_size_nm else ""})
    atomic_write(out / "meta.csv", lambda tmp: _write_rows(tmp, rows, ["stem", "pixel_size_nm"]))
    atomic_write(out / "skipped.csv", lambda tmp: _write_rows(tmp, skipped, ["stem", "reason"]))
    return n_targets, n_agreed, len(rows)


def adapt(images: str | Path | Dataset, out: str | Path, *, model: str = "default", checkpoint: str | None = None,
          rounds: int = 2, agree_iou: float = 0.8, min_labels: int = 20, config: FinetuneConfig = FinetuneConfig(),
          device: str = "auto", progress: bool = True) -> list[AdaptRound]:
    """Self-train a model on unlabelled images; see the module's description.

    Parameters
    ----------
    images : path or Dataset
    out : path
        The run folder.
    model, checkpoint : str
        The starting model, as ``--model`` and ``--checkpoint`` take it.
    rounds : int
        Rounds of pseudo-labelling and fine-tuning.
    agree_iou : float
        IoU between a model candidate and the classical mask for a pseudo-label.
    min_labels : int
        Fewer pseudo-labels than this end the adaptation (the last model is kept).
    config : FinetuneConfig
        Each round's fine-tuning.

    Returns
    -------
    list of AdaptRound
    """
    from . import load_model, load_predictor
    from .finetune import finetune

    if str(model) == "traditional":
        raise SegSEMError("--model traditional: adaptation trains a SAM2 model; expected default, a built-in "
                          "name, a project checkpoint or an official config")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = images if isinstance(images, Dataset) else Dataset(images)
    if ds.root.resolve() == out.resolve():
        raise SegSEMError(f"--out {out}: the adaptation needs its own folder, not the images' own")
    state_path = out / "adapt.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and (state.get("images") != str(ds.source.resolve()) or state.get("model") != model):
        raise SegSEMError(f"{state_path}: a run of {state.get('model')} on {state.get('images')}; "
                          f"expected {model} on {ds.source.resolve()} (use another --out)")
    state.update(images=str(ds.source.resolve()), model=model, agree_iou=agree_iou)
    done = [AdaptRound(**r) for r in state.get("rounds", [])]
    current, current_ckpt = (model, checkpoint)
    if done and done[-1].checkpoint:
        current, current_ckpt = done[-1].checkpoint, None
    for k in range(len(done), rounds):
        t0 = time.perf_counter()
        folder = out / f"round{k}"
        predictor = load_predictor(current, checkpoint=current_ckpt, device=device)
        n_t, n_a, n_i = pseudo_labels(ds, predictor, folder / "data", agree_iou=agree_iou, progress=progress)
        del predictor
        boot = n_a < min_labels
        if boot:
            n_t, n_a, n_i = pseudo_labels(ds, None, folder / "data", agree_iou=agree_iou, progress=progress)
        if n_a < min_labels:
            done.append(AdaptRound(round=k, targets=n_t, agreed=n_a, images=n_i, bootstrap=boot, best_val_iou=None,
                                   checkpoint=None))
            _save(state_path, state, done)
            break
        net, spec = load_model(current, checkpoint=current_ckpt, device="cpu")
        result = finetune(net, spec, folder / "data", folder / "run", config=config, device=device,
                          resume=(folder / "run" / "last.pt").exists(), base_name=str(current), progress=progress)
        current, current_ckpt = str(Path(result.best_checkpoint).resolve()), None
        done.append(AdaptRound(round=k, targets=n_t, agreed=n_a, images=n_i, bootstrap=boot,
                               best_val_iou=float(result.best_val_iou), checkpoint=current))
        state.setdefault("wall_time_s", {})[f"round{k}"] = round(time.perf_counter() - t0, 1)
        _save(state_path, state, done)
    last = [r for r in done if r.checkpoint]
    if last:
        shutil.copy2(last[-1].checkpoint, out / "best.pt")
    return done


def _save(path: Path, state: dict, done: list[AdaptRound]) -> None:
    state["rounds"] = [r.__dict__ for r in done]
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(state, indent=2) + "\n"))
