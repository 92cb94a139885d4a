"""SAM2 models and checkpoints, built through the real ``sam2`` classes.

Three ways to name a model:

- an official config name (``sam2_hiera_t|s|b+|l``, ``sam2.1_hiera_t|s|b+|l``) with a
  checkpoint in Meta's format (``{"model": state_dict}``);
- a path to a project checkpoint, which carries its configuration (config, hydra
  overrides, image size, input policy, training metadata) under the key ``"segsem"``;
- a built-in name of the project's own models (``mini-foundation``, ``mini-sem``), shipped
  inside the package.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import SegSEMError

__all__ = [
    "OFFICIAL_CONFIGS",
    "BUILTIN_MODELS",
    "InputPolicy",
    "ModelSpec",
    "mini_spec",
    "build_model",
    "load_state",
    "save_checkpoint",
    "load_model_file",
    "resolve_spec",
    "module_parameter_counts",
]

OFFICIAL_CONFIGS = {
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The project's own models, shipped in ``segsem_lite/models/``.
#: The default SEM model of ``segsem extract``, ``segsem evaluate`` and ``segsem finetune`` (``--model default``).
DEFAULT_SEM_MODEL = "mini-sem"
BUILTIN_MODELS = {"mini-foundation": MODELS_DIR / "mini-foundation.pt", "mini-sem": MODELS_DIR / "mini-sem.pt"}


@dataclass(frozen=True)
class InputPolicy:
    """How an image becomes the model's square input.

    Attributes
    ----------
    mode : {"whole", "window"}
        ``whole``: the whole image resized to the model's input size, encoded once for all
        its targets (SAM2's own way). ``window``: a square window around each target,
        resized to the input size, so a small model sees the target near native resolution;
        targets sharing a window share its encoding.
    window_px : int
        Window side in pixels when the target's extent is unknown.
    context : float
        Window side as a multiple of the target's design extent, when known.
    min_window_px, max_window_px : int
        Bounds of the window side.
    box_prompt : bool
        Add the target's design bounding box, when known, as a box prompt to the point
        (for models trained with box prompts; the layout says which feature is meant).
    refine_passes : int
        When the target's extent is unknown (no design): after the first pass, in a
        ``window_px`` window around the point, predict again this many times in a window
        fitted to the previous pass's best candidate, as a design would have placed it.
        Small objects are then seen magnified. With ``box_prompt`` that candidate's bounding
        box is also the later pass's box prompt, as a design's would be.
    """

    mode: str = "whole"
    window_px: int = 256
    context: float = 1.6
    min_window_px: int = 96
    max_window_px: int = 512
    box_prompt: bool = False
    refine_passes: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "window"):
            raise SegSEMError(f"input mode {self.mode!r}: expected 'whole' or 'window'")
        if not isinstance(self.refine_passes, int) or self.refine_passes < 0:
            raise SegSEMError(f"refine_passes {self.refine_passes!r}: expected a whole number >= 0")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: the sam2 config, hydra overrides, input policy.

    Attributes
    ----------
    name : str
    config : str
        sam2 config path, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``.
    overrides : tuple of str
        Hydra overrides applied to the config.
    image_size : int
        Model input side in pixels.
    input : InputPolicy
    metadata : dict
        Training metadata (data, steps, wall time, figures).
    iou_calibration : dict
        A monotone map from the IoU head's raw prediction to the IoU it achieves
        (``x``, ``y`` knots and how they were fitted; see :mod:`segsem_lite.sam.calibrate`).
        Empty: the raw prediction is used.
    """

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    image_size: int = 1024
    input: InputPolicy = field(default_factory=InputPolicy)
    metadata: dict = field(default_factory=dict)
    iou_calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["overrides"] = tuple(d.get("overrides", ()))
        d["input"] = InputPolicy(**d.get("input", {}))
        return cls(**d)


def mini_spec(name: str = "mini", *, image_size: int = 256, width: int = 128, input_policy: InputPolicy | None = None,
              metadata: dict | None = None) -> ModelSpec:
    """The project's small SAM2: a trimmed Hiera trunk at a small input size.

    Built from ``sam2.1_hiera_t.yaml`` by hydra overrides: trunk embed_dim 32 with stages
    [1, 1, 2, 1], and ``width`` channels in the neck, prompt encoder, mask decoder and
    memory modules (3.5 M parameters at width 128).
    """
    o = [
        f"++model.image_size={image_size}",
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.trunk.window_spec=[8,4,8,4]",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        f"++model.image_encoder.neck.d_model={width}",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={width}",
        f"++model.memory_attention.d_model={width}",
        "++model.memory_attention.num_layers=1",
        f"++model.memory_attention.layer.d_model={width}",
        f"++model.memory_attention.layer.dim_feedforward={4 * width}",
        f"++model.memory_attention.layer.self_attention.embedding_dim={width}",
        f"++model.memory_attention.layer.cross_attention.embedding_dim={width}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{image_size // 16},{image_size // 16}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{image_size // 16},{image_size // 16}]",
        f"++model.memory_encoder.in_dim={width}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={width}",
        f"++model.memory_encoder.fuser.layer.dim={width}",
        "++model.memory_encoder.fuser.num_layers=1",
    ]
    return ModelSpec(name=name, config=OFFICIAL_CONFIGS["sam2.1_hiera_t"], overrides=tuple(o), image_size=image_size,
                     input=input_policy or InputPolicy(mode="window"), metadata=dict(metadata or {}))


def official_spec(name: str) -> ModelSpec:
    """The spec of an official SAM2 model at its native 1024 px input."""
    if name not in OFFICIAL_CONFIGS:
        raise SegSEMError(f"model {name!r}: expected one of {', '.join(OFFICIAL_CONFIGS)}")
    return ModelSpec(name=name, config=OFFICIAL_CONFIGS[name], image_size=1024, input=InputPolicy(mode="whole"))


def build_model(spec: ModelSpec, *, device: str | torch.device = "cpu"):
    """Instantiate a ``sam2.modeling.sam2_base.SAM2Base`` from a spec, with random weights.

    ``sam2`` (and Hydra, which it starts at import) is imported here, not at module import.
    """
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sam2  # noqa: F401  (initialises Hydra's config module)

    cfg = compose(config_name=spec.config, overrides=list(spec.overrides))
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if int(model.image_size) != int(spec.image_size):
        raise SegSEMError(f"model {spec.name}: config gives image_size {model.image_size}, spec says {spec.image_size}")
    return model.to(device)


def _first_mismatch(model_sd: dict, ckpt_sd: dict) -> str | None:
    missing = [k for k in model_sd if k not in ckpt_sd]
    unexpected = [k for k in ckpt_sd if k not in model_sd]
    shapes = [k for k in model_sd if k in ckpt_sd and tuple(model_sd[k].shape) != tuple(ckpt_sd[k].shape)]
    if shapes:
        k = shapes[0]
        return (f"first mismatched key {k!r} has shape {tuple(ckpt_sd[k].shape)} in the checkpoint, "
                f"{tuple(model_sd[k].shape)} in the model ({len(shapes)} shape mismatches, {len(missing)} missing, "
                f"{len(unexpected)} unexpected keys)")
    if missing:
        return f"first missing key {missing[0]!r} ({len(missing)} missing, {len(unexpected)} unexpected keys)"
    if unexpected:
        return f"first unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected keys)"
    return None


def _torch_load(path: Path) -> dict:
    if not path.is_file():
        raise SegSEMError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SegSEMError(f"{path}: not a loadable PyTorch checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(obj, dict) or "model" not in obj or not isinstance(obj["model"], dict):
        raise SegSEMError(f"{path}: expected a checkpoint of the form {{'model': state_dict}} (Meta's format)")
    return obj


def load_state(model, path: str | Path, *, spec: ModelSpec) -> dict:
    """Load a checkpoint's weights into a model, with ``weights_only=True``.

    Raises
    ------
    SegSEMError
        If the file is missing or not a checkpoint, or its weights do not fit the config:
        one line naming both and the first mismatched key.
    """
    path = Path(path)
    obj = _torch_load(path)
    problem = _first_mismatch(model.state_dict(), obj["model"])
    if problem:
        raise SegSEMError(f"checkpoint {path} does not fit config {spec.name} ({spec.config}): {problem}")
    model.load_state_dict(obj["model"])
    return obj


def save_checkpoint(path: str | Path, model, spec: ModelSpec, **extra: Any) -> Path:
    """Save a project checkpoint: Meta's ``{"model": state_dict}`` plus ``"segsem"`` (the spec as JSON text)."""
    from ..dataset import atomic_write

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {"model": state, "segsem": json.dumps(spec.to_dict()), **extra}
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_model_file(path: str | Path, *, device: str | torch.device = "cpu"):
    """Build and load a project checkpoint, which carries its own configuration.

    Returns
    -------
    (SAM2Base, ModelSpec)
    """
    path = Path(path)
    obj = _torch_load(path)
    if "segsem" not in obj:
        raise SegSEMError(f"{path}: a checkpoint in Meta's format carries no configuration; pass its config name "
                          f"as the model (one of {', '.join(OFFICIAL_CONFIGS)}) with --checkpoint {path}")
    spec = ModelSpec.from_dict(json.loads(obj["segsem"]))
    model = build_model(spec)
    problem = _first_mismatch(model.state_dict(), obj["model"])
    if problem:
        raise SegSEMError(f"checkpoint {path} does not fit its own config {spec.name} ({spec.config}): {problem}")
    model.load_state_dict(obj["model"])
    return model.to(device), spec


def resolve_spec(name: str, checkpoint: str | None = None):
    """Which model a name means: ``("builtin"|"file"|"official", spec_or_path)``.

    ``default`` is the shipped SEM model (:data:`DEFAULT_SEM_MODEL`), as for ``segsem extract``.
    """
    if name == "default":
        name = DEFAULT_SEM_MODEL
    if name in BUILTIN_MODELS:
        path = BUILTIN_MODELS[name]
        if not path.exists():
            raise SegSEMError(f"model {name!r}: not shipped in this installation ({path} is missing)")
        if checkpoint:
            raise SegSEMError(f"--checkpoint {checkpoint}: built-in model {name!r} carries its own weights")
        return "file", path
    if name in OFFICIAL_CONFIGS:
        if not checkpoint:
            raise SegSEMError(f"model {name!r}: an official config needs --checkpoint PATH to a checkpoint in "
                              "Meta's format (weights cannot be downloaded here)")
        return "official", official_spec(name)
    if Path(name).suffix in (".pt", ".pth", ".ckpt") or Path(name).exists():
        if checkpoint:
            raise SegSEMError(f"--checkpoint {checkpoint}: a project checkpoint {name} carries its own weights")
        return "file", Path(name)
    known = ", ".join([*BUILTIN_MODELS, *OFFICIAL_CONFIGS, "traditional"])
    raise SegSEMError(f"model {name!r}: expected one of {known}, or a path to a .pt checkpoint")


def module_parameter_counts(model) -> dict[str, dict[str, int]]:
    """Parameters of each top-level module: ``{module: {"total": n, "trainable": m}}``."""
    counts: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        c = counts.setdefault(top, {"total": 0, "trainable": 0})
        c["total"] += p.numel()
        c["trainable"] += p.numel() if p.requires_grad else 0
    return counts


def clone_spec(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """A copy of a spec with some fields changed."""
    d = copy.deepcopy(spec.to_dict())
    d.update(changes)
    return ModelSpec.from_dict(d)
