"""The SAM2 engine: models and checkpoints, the predictor, losses, selective fine-tuning.

Everything that imports torch or sam2 lives here; import it only when a model is asked for.
"""

from __future__ import annotations


from ..errors import SegSEMError
from .models import BUILTIN_MODELS, DEFAULT_SEM_MODEL, OFFICIAL_CONFIGS, InputPolicy, ModelSpec, build_model, load_model_file, load_state, \
    mini_spec, module_parameter_counts, resolve_spec, save_checkpoint
from .predictor import SAM2Predictor

__all__ = [
    "BUILTIN_MODELS", "OFFICIAL_CONFIGS", "InputPolicy", "ModelSpec", "SAM2Predictor", "build_model",
    "load_model_file", "load_predictor", "load_state", "mini_spec", "module_parameter_counts", "save_checkpoint",
    "shipped_default",
]

#: A fresh, randomly initialised model of the project's small configuration (a training start).
SCRATCH = "mini-scratch"


def shipped_default() -> str | None:
    """``mini-sem`` when the package ships it, else None (the standard pipeline)."""
    return DEFAULT_SEM_MODEL if BUILTIN_MODELS[DEFAULT_SEM_MODEL].exists() else None


def load_model(name: str, *, checkpoint: str | None = None, device: str = "cpu"):
    """Build a SAM2 model from a name (built-in, project checkpoint, or official config with checkpoint).

    Returns
    -------
    (SAM2Base, ModelSpec)
    """
    if name == SCRATCH:
        if checkpoint:
            raise SegSEMError(f"--checkpoint {checkpoint}: {SCRATCH} is a random initialisation, it takes no weights")
        spec = mini_spec(SCRATCH)
        model = build_model(spec)
        from .devices import resolve_device

        return model.to(resolve_device(device)), spec
    kind, what = resolve_spec(name, checkpoint)
    if kind == "file":
        model, spec = load_model_file(what, device="cpu")
        if name in BUILTIN_MODELS:
            spec = ModelSpec.from_dict({**spec.to_dict(), "name": name})
    else:
        spec = what
        model = build_model(spec)
        load_state(model, checkpoint, spec=spec)
    from .devices import resolve_device

    return model.to(resolve_device(device)), spec


def load_predictor(name: str, *, checkpoint: str | None = None, device: str = "auto") -> SAM2Predictor:
    """A :class:`SAM2Predictor` for a model name; see :func:`load_model`."""
    model, spec = load_model(name, checkpoint=checkpoint, device=device)
    return SAM2Predictor(model, spec, device=device, name=spec.name if name not in BUILTIN_MODELS else name)
