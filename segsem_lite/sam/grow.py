"""Deepen a trained model's Hiera trunk without changing what it computes.

``python -m segsem_lite.sam.grow RUN/best.pt OUT.pt --stages 1,2,7,1 --global-blocks 4,9``

Each stage keeps its trained blocks first, in order; the blocks added after them start as
identities (their attention and MLP output projections are zero, so each residual branch
adds nothing). The grown model's outputs equal the old model's, and training goes on with the
extra depth. This is how mini-foundation gained capacity without restarting from random weights.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ..errors import SegSEMError
from .models import ModelSpec, build_model, load_model_file, save_checkpoint

__all__ = ["deepen_trunk"]

_TRUNK = "++model.image_encoder.trunk."


def _override(spec: ModelSpec, key: str, default):
    for o in spec.overrides:
        if o.startswith(_TRUNK + key + "="):
            return [int(v) for v in re.findall(r"-?\d+", o.split("=", 1)[1])]
    return default


def _block_map(old_stages, new_stages) -> dict[int, int]:
    """Old block index -> new block index: each stage's trained blocks come first."""
    mapping, old0, new0 = {}, 0, 0
    for n_old, n_new in zip(old_stages, new_stages):
        for r in range(n_old):
            mapping[old0 + r] = new0 + r
        old0, new0 = old0 + n_old, new0 + n_new
    return mapping


def deepen_trunk(model, spec: ModelSpec, stages, global_att_blocks, *, seed: int = 0, check: bool = True):
    """A deeper copy of ``model``: ``stages`` blocks per stage, global attention at ``global_att_blocks``.

    Returns
    -------
    (SAM2Base, ModelSpec)
        The grown model, whose outputs equal the old model's, and its spec. The added blocks' other
        weights are drawn from ``seed``, so the same call grows the same model.

    Raises
    ------
    SegSEMError
        If a stage would lose blocks, or a trained block would change between windowed and global attention.
    """
    old_stages = _override(spec, "stages", None)
    old_global = _override(spec, "global_att_blocks", None)
    if old_stages is None or old_global is None:
        raise SegSEMError(f"model {spec.name}: its config sets no trunk stages; only the project's small models grow")
    stages, global_att_blocks = [int(s) for s in stages], [int(b) for b in global_att_blocks]
    if len(stages) != len(old_stages) or any(n < o for n, o in zip(stages, old_stages)):
        raise SegSEMError(f"--stages {','.join(map(str, stages))}: expected {len(old_stages)} stages, each with at "
                          f"least the {','.join(map(str, old_stages))} blocks the model has")
    mapping = _block_map(old_stages, stages)
    for o, n in mapping.items():
        if (o in old_global) != (n in global_att_blocks):
            raise SegSEMError(f"--global-blocks {','.join(map(str, global_att_blocks))}: trained block {o} becomes "
                              f"block {n}, which must keep its {'global' if o in old_global else 'windowed'} attention")
    overrides = [o for o in spec.overrides if not o.startswith((_TRUNK + "stages=", _TRUNK + "global_att_blocks="))]
    overrides += [f"{_TRUNK}stages=[{','.join(map(str, stages))}]",
                  f"{_TRUNK}global_att_blocks=[{','.join(map(str, global_att_blocks))}]"]
    new_spec = ModelSpec.from_dict({**spec.to_dict(), "overrides": overrides})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        grown = build_model(new_spec)
    state = grown.state_dict()
    prefix = "image_encoder.trunk.blocks."
    for k, v in model.state_dict().items():
        if k.startswith(prefix):
            idx, rest = k[len(prefix):].split(".", 1)
            k = f"{prefix}{mapping[int(idx)]}.{rest}"
        state[k] = v.clone()
    grown.load_state_dict(state)
    with torch.no_grad():
        for i in sorted(set(range(sum(stages))) - set(mapping.values())):
            block = grown.image_encoder.trunk.blocks[i]
            for branch_out in (block.attn.proj, block.mlp.layers[-1]):
                branch_out.weight.zero_()
                branch_out.bias.zero_()
    if check:
        model.eval(), grown.eval()
        x = torch.randn(1, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            a, b = model.forward_image(x), grown.forward_image(x)
        diff = max(float((p - q).abs().max()) for p, q in zip(a["backbone_fpn"], b["backbone_fpn"]))
        if diff > 1e-4:
            raise SegSEMError(f"grown trunk changed the features by {diff:.2e}: the identity start failed")
    return grown, new_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a project checkpoint (it carries its config)")
    ap.add_argument("out", help="where to write the grown checkpoint")
    ap.add_argument("--stages", required=True, help="blocks per trunk stage, for example 1,2,7,1")
    ap.add_argument("--global-blocks", required=True, help="blocks with global attention, for example 4,9")
    ap.add_argument("--seed", type=int, default=0, help="seed for the added blocks' initial weights (default 0)")
    args = ap.parse_args()
    try:
        model, spec = load_model_file(args.checkpoint)
        grown, new_spec = deepen_trunk(model, spec, args.stages.split(","), args.global_blocks.split(","),
                                       seed=args.seed)
    except (SegSEMError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    save_checkpoint(args.out, grown, new_spec)
    n_old, n_new = (sum(p.numel() for p in m.parameters()) for m in (model, grown))
    print(f"{args.out}: trunk stages {args.stages}, {n_old / 1e6:.2f} M -> {n_new / 1e6:.2f} M parameters, "
          "outputs unchanged")


if __name__ == "__main__":
    main()
