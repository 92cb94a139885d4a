"""Ship a trained checkpoint as a built-in model: ``python -m segsem_lite.sam.ship RUN/best.pt NAME``.

Weights are stored in float16 (half the size; loading casts them back to float32), with the
model's configuration and training metadata, in ``segsem_lite/models/NAME.pt``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..dataset import atomic_write
from .models import BUILTIN_MODELS, ModelSpec, load_model_file

__all__ = ["ship"]


def ship(checkpoint: str, name: str, *, extra: dict | None = None, input_policy: dict | None = None) -> str:
    """Write ``segsem_lite/models/NAME.pt`` from a project checkpoint; returns its path.

    ``extra`` adds metadata; ``input_policy`` changes fields of the input policy
    (for example ``{"refine_passes": 1}``), which the weights do not depend on.
    """
    model, spec = load_model_file(checkpoint)
    meta = {**spec.metadata, **(extra or {})}
    d = spec.to_dict()
    spec = ModelSpec.from_dict({**d, "name": name, "metadata": meta, "input": {**d["input"], **(input_policy or {})}})
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = BUILTIN_MODELS[name]
    atomic_write(path, lambda tmp: torch.save({"model": state, "segsem": json.dumps(spec.to_dict())}, tmp))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("name", choices=sorted(BUILTIN_MODELS))
    ap.add_argument("--meta", default="{}", help="JSON object of metadata to add (data, recipe, wall time), "
                                                 "or @FILE holding one (segsem_lite/models/NAME.card.json)")
    ap.add_argument("--refine-passes", type=int, default=None,
                    help="passes in a window fitted to the previous pass's mask when no design gives the extent")
    args = ap.parse_args()
    policy = {} if args.refine_passes is None else {"refine_passes": args.refine_passes}
    meta = Path(args.meta[1:]).read_text() if args.meta.startswith("@") else args.meta
    print(ship(args.checkpoint, args.name, extra=json.loads(meta), input_policy=policy))


if __name__ == "__main__":
    main()
