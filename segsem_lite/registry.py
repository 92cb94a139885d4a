"""Model names on the command line and in chapters: ``traditional`` or a SAM2 model.

``traditional`` runs the standard pipeline (no model). Anything else is resolved by
the torch sub-package :mod:`segsem_lite.sam`, imported only then, so the classical
path never imports torch.
"""

from __future__ import annotations

from typing import Any

from .errors import SegSEMError

__all__ = ["TRADITIONAL", "DEFAULT_MODEL", "load_model", "model_label"]

TRADITIONAL = "traditional"
#: Default of ``segsem extract`` and ``segsem evaluate``: the shipped SEM model when the
#: package carries it, else the standard pipeline.
DEFAULT_MODEL = "default"


def load_model(spec: str | None, *, checkpoint: str | None = None, device: str = "auto", **kwargs: Any):
    """Resolve a model specification to a mask source, or None for the standard pipeline.

    Parameters
    ----------
    spec : str or None
        ``traditional`` (or None); ``default``; a built-in model name; a path to a
        project checkpoint; or an official SAM2 config name (``sam2.1_hiera_t`` ...)
        together with ``checkpoint``.
    checkpoint : str, optional
        Checkpoint in Meta's format, for an official config name.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``npu`` or ``mps``.

    Returns
    -------
    MaskSource or None
    """
    if spec is None or spec == TRADITIONAL:
        if checkpoint:
            raise SegSEMError(f"--checkpoint {checkpoint}: not used by --model {TRADITIONAL}")
        return None
    try:
        from .sam import load_predictor, shipped_default
    except ImportError as exc:
        raise SegSEMError(f"model {spec!r}: the SAM2 engine cannot be imported ({exc}); "
                          f"install torch and sam2, or use --model {TRADITIONAL}") from None
    if spec == DEFAULT_MODEL:
        spec = shipped_default()
        if spec is None:
            return None
    return load_predictor(spec, checkpoint=checkpoint, device=device, **kwargs)


def model_label(model: Any) -> str:
    """A short name for a model in tables: ``standard`` for none."""
    spec = getattr(model, "spec", None)  # a ModelRef: named without loading it
    if isinstance(spec, str):
        if spec == TRADITIONAL:
            return "standard"
        if spec == DEFAULT_MODEL:
            try:
                from .sam import shipped_default
            except ImportError:
                return spec
            return shipped_default() or "standard"
        return spec
    return "standard" if model is None else str(getattr(model, "name", type(model).__name__))
