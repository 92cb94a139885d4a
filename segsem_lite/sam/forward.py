"""The one forward pass of SAM2 for single images, shared by training and inference.

``SAM2ImagePredictor`` runs under ``torch.no_grad()`` and hard-codes the feature sizes of
1024 px input, so this module calls the model's own modules in the same order as the
predictor does: ``forward_image``, ``_prepare_backbone_features``, ``no_mem_embed``, the
prompt encoder and the mask decoder, with feature sizes taken from the input size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..threshold import to_unit_float

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalise", "Window", "window_for", "SamForward"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(image: np.ndarray, size: int) -> torch.Tensor:
    """An 8- or 16-bit grayscale image as SAM2's input: (3, size, size), ImageNet-normalised.

    The image is scaled to [0, 1] by its dtype's maximum and resized; there is no
    denoising (SegSEM III-B: the encoder learns the noise texture).
    """
    img = to_unit_float(image)
    if img.shape != (size, size):
        interp = cv2.INTER_AREA if max(img.shape) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    t = torch.from_numpy(np.ascontiguousarray(img)).float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t.expand(3, size, size) - mean) / std


class Window:
    """A window ``[x0, x0 + side) x [y0, y0 + side_h)`` of an image, in pixels.

    It maps points (x, y) from the image to the model's square input of ``size`` pixels,
    crops (padding by reflection beyond the image), and pastes full-resolution outputs
    back. Windows around targets are square; the ``whole`` policy's window is the image.
    """

    def __init__(self, x0: int, y0: int, side: int, size: int, side_h: int | None = None):
        self.x0, self.y0, self.side, self.size = int(x0), int(y0), int(side), int(size)
        self.side_h = int(side_h) if side_h is not None else self.side

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.side, self.side_h)

    def to_input(self, points_xy: np.ndarray) -> np.ndarray:
        """Points (x, y) in image pixels to the model's input pixels (pixel centres at +0.5)."""
        p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return (p - [self.x0, self.y0] + 0.5) * [self.size / self.side, self.size / self.side_h]

    def crop(self, image: np.ndarray, fill: float | None = None) -> np.ndarray:
        """The window's pixels; beyond the image, the image reflected (``fill`` None) or ``fill``.

        Images are reflected, so the model sees plausible context; a target's mask takes
        ``fill=0``: the reflected copy of a feature is not the feature the point prompts.
        """
        h, w = image.shape
        pad_l, pad_t = max(0, -self.x0), max(0, -self.y0)
        pad_r, pad_b = max(0, self.x0 + self.side - w), max(0, self.y0 + self.side_h - h)
        sub = image[max(0, self.y0): self.y0 + self.side_h, max(0, self.x0): self.x0 + self.side]
        if pad_l or pad_t or pad_r or pad_b:
            pads = ((pad_t, pad_b), (pad_l, pad_r))
            if fill is not None:
                return np.pad(sub, pads, mode="constant", constant_values=fill)
            mode = "reflect" if min(sub.shape) > max(pad_l, pad_t, pad_r, pad_b) else "edge"
            sub = np.pad(sub, pads, mode=mode)
        return sub

    def paste(self, values: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
        """Put (K, side_h, side) window values into (K, H, W) arrays filled with ``fill``."""
        k = values.shape[0]
        out = np.full((k, *shape), fill, dtype=values.dtype)
        h, w = shape
        ys, xs = max(0, self.y0), max(0, self.x0)
        ye, xe = min(h, self.y0 + self.side_h), min(w, self.x0 + self.side)
        out[:, ys:ye, xs:xe] = values[:, ys - self.y0: ye - self.y0, xs - self.x0: xe - self.x0]
        return out


def window_for(shape: tuple[int, int], size: int, policy, *, point_xy=None, region_xyxy=None) -> Window:
    """The input window of a target under an :class:`~segsem_lite.sam.models.InputPolicy`.

    ``whole``: the image itself (non-square images are resized anisotropically, as SAM2 does).
    ``window``: a square around the target's region (design bounding box) grown by
    ``policy.context``, or ``policy.window_px`` around the prompt when the region is unknown.
    """
    h, w = shape
    if policy.mode == "whole":
        return Window(0, 0, w, size, side_h=h)
    if region_xyxy is not None:
        x0, y0, x1, y1 = region_xyxy
        side = policy.context * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    else:
        side = policy.window_px
        cx, cy = point_xy
    side = int(round(min(max(side, policy.min_window_px), policy.max_window_px)))
    return Window(int(round(cx - side / 2)), int(round(cy - side / 2)), side, size)


class SamForward(nn.Module):
    """SAM2's image path as one module (so DistributedDataParallel can wrap it).

    Parameters
    ----------
    model : sam2.modeling.sam2_base.SAM2Base
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def size(self) -> int:
        return int(self.model.image_size)

    def encode(self, images: torch.Tensor) -> dict:
        """Image features of a batch (B, 3, S, S)."""
        m = self.model
        backbone_out = m.forward_image(images)
        _, vision_feats, _, feat_sizes = m._prepare_backbone_features(backbone_out)
        if m.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + m.no_mem_embed
        b = images.shape[0]
        feats = [f.permute(1, 2, 0).reshape(b, -1, *hw) for f, hw in zip(vision_feats, feat_sizes)]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def decode(self, features: dict, points: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None = None,
               multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, K, S/4, S/4) and predicted IoU (B, K) for prompts in input pixels.

        ``features`` hold one image per prompt row (B rows).
        """
        m = self.model
        coords, labs = points, labels
        if boxes is not None:
            box_coords = boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=labels.dtype, device=labels.device).repeat(boxes.shape[0], 1)
            coords, labs = torch.cat([box_coords, coords], 1), torch.cat([box_labels, labs], 1)
        sparse, dense = m.sam_prompt_encoder(points=(coords, labs), boxes=None, masks=None)
        logits, iou, _, _ = m.sam_mask_decoder(
            image_embeddings=features["image_embed"],
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=features["high_res_feats"],
        )
        return logits, iou

    def forward(self, images: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
                boxes: torch.Tensor | None = None, multimask_output: bool = True):
        return self.decode(self.encode(images), points, labels, boxes, multimask_output)


def upsample_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Low-resolution logits (B, K, s, s) to (B, K, size, size), bilinear."""
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
