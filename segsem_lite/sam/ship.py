"""Ship a trained checkpoint as a built-in model: ``python -m segsem_lite.sam.ship RUN/best.pt NAME``.

Weights are stored in float16 (half the size; loading casts them back to float32), with the
model's configuration and training metadata, in ``segsem_lite/models/NAME.pt``.
"""

from __future__ import annotations

import argparse
import json

import torch

from ..dataset import atomic_write
from .models import BUILTIN_MODELS, ModelSpec, load_model_file

__all__ = ["ship"]


def ship(checkpoint: str, name: str, *, extra: dict | None = None) -> str:
    """Write ``segsem_lite/models/NAME.pt`` from a project checkpoint; returns its path."""
    model, spec = load_model_file(checkpoint)
    meta = {**spec.metadata, **(extra or {})}
    spec = ModelSpec.from_dict({**spec.to_dict(), "name": name, "metadata": meta})
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = BUILTIN_MODELS[name]
    atomic_write(path, lambda tmp: torch.save({"model": state, "segsem": json.dumps(spec.to_dict())}, tmp))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("name", choices=sorted(BUILTIN_MODELS))
    ap.add_argument("--meta", default="{}", help="JSON object of metadata to add (data, wall time, figures)")
    args = ap.parse_args()
    print(ship(args.checkpoint, args.name, extra=json.loads(args.meta)))


if __name__ == "__main__":
    main()
