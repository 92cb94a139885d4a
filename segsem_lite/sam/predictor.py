"""A SAM2 mask source for the pipeline: ``set_image`` once, ``predict`` per prompt."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..coords import point_in_image
from ..dataset import mask_bbox_xyxy
from ..errors import SegSEMError
from .devices import autocast, resolve_device
from .forward import SamForward, normalise, window_for
from .models import InputPolicy, ModelSpec

__all__ = ["SAM2Predictor"]


class SAM2Predictor:
    """SAM2's predictor vocabulary over the project's forward pass.

    Parameters
    ----------
    model : SAM2Base
    spec : ModelSpec
        Input size and input policy.
    device : str or torch.device
    name : str, optional

    Notes
    -----
    Scores are the IoU head's predictions, mapped through the model's
    ``spec.iou_calibration`` when it has one; ``calibrated = False`` gives the raw head.
    ``whole`` input policy: the image is encoded once in :meth:`set_image` and every prompt
    reuses it. ``window`` policy: each target is seen through a window around its design
    region; prompts that fall in the same window reuse its encoding.
    """

    def __init__(self, model, spec: ModelSpec, *, device: str | torch.device = "cpu", name: str | None = None):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.forward = SamForward(model.to(self.device).eval())
        self.spec = spec
        self.name = name or spec.name
        self._image: np.ndarray | None = None
        self._cache: dict = {}
        self.calibrated = bool(spec.iou_calibration)

    @property
    def model(self):
        return self.forward.model

    @property
    def policy(self) -> InputPolicy:
        return self.spec.input

    def set_image(self, image: np.ndarray) -> None:
        """Take a new image (8- or 16-bit grayscale); in ``whole`` mode, encode it now."""
        img = np.asarray(image)
        if img.ndim != 2:
            raise SegSEMError(f"image of shape {img.shape}: expected a 2-D grayscale image")
        self._image = img
        self._cache = {}
        if self.policy.mode == "whole":
            self._features(window_for(img.shape, self.forward.size, self.policy))

    @torch.no_grad()
    def set_image_batch(self, images: list[np.ndarray]) -> None:
        """Encode several images in one forward pass (``whole`` policy); choose one with :meth:`use_image`.

        Images of the same shape are stacked into one batch for the image encoder.
        """
        if self.policy.mode != "whole":
            raise SegSEMError(f"model {self.name}: batched encoding needs the 'whole' input policy, "
                              f"this model looks through a window per target")
        size = self.forward.size
        x = torch.stack([normalise(np.asarray(im), size) for im in images]).to(self.device)
        with autocast(self.device):
            feats = self.forward.encode(x)
        self._batch = [(np.asarray(im), {"image_embed": feats["image_embed"][i:i + 1],
                                         "high_res_feats": [f[i:i + 1] for f in feats["high_res_feats"]]})
                       for i, im in enumerate(images)]

    def use_image(self, index: int) -> None:
        """Make image ``index`` of the last :meth:`set_image_batch` the current image, without encoding."""
        image, feats = self._batch[index]
        self._image = image
        win = window_for(image.shape, self.forward.size, self.policy)
        self._cache = {win.key: feats}

    @torch.no_grad()
    def _features(self, win) -> dict:
        if win.key not in self._cache:
            x = normalise(win.crop(self._image), win.size)
            with autocast(self.device):
                feats = self.forward.encode(x[None].to(self.device))
            self._cache[win.key] = feats
        return self._cache[win.key]

    @torch.no_grad()
    def predict(self, point_coords: np.ndarray, point_labels: np.ndarray, box: np.ndarray | None = None,
                multimask_output: bool = True, region_xyxy: tuple | None = None, return_logits: bool = False,
                refine_passes: int | None = None):
        """Candidate masks for one prompt.

        Parameters
        ----------
        point_coords : (N, 2) ndarray
            Points (x, y) in image pixels.
        point_labels : (N,) ndarray
            1 foreground, 0 background.
        box : (4,) ndarray, optional
            Box prompt (x0, y0, x1, y1) in image pixels. Models whose input policy has
            ``box_prompt`` use ``region_xyxy`` when no box is given.
        multimask_output : bool
            Three candidates (True) or one.
        region_xyxy : tuple, optional
            The target's design bounding box: where a ``window`` model looks.
        return_logits : bool
            Return logits at full resolution instead of boolean masks.
        refine_passes : int, optional
            Passes in a window fitted to the previous pass's best candidate, when
            ``region_xyxy`` is unknown (``window`` policy only); default: the policy's.

        Returns
        -------
        masks : (K, H, W) bool (or float logits) ndarray
        scores : (K,) ndarray
            Predicted IoU (calibrated when the model carries a calibration).
        low_res_logits : (K, S/4, S/4) ndarray
        """
        if self._image is None:
            raise SegSEMError("no image set: call set_image(image) before predict")
        pts = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
        for p in pts:
            if not point_in_image(p, self._image.shape):
                raise SegSEMError(f"prompt (x={p[0]:g}, y={p[1]:g}) is outside the image of "
                                  f"{self._image.shape[1]}x{self._image.shape[0]} px")
        size = self.forward.size
        if box is None and self.policy.box_prompt and region_xyxy is not None:
            box = np.asarray(region_xyxy, dtype=np.float64)
        win = window_for(self._image.shape, size, self.policy, point_xy=pts[0], region_xyxy=region_xyxy)
        feats = self._features(win)
        h, w = self._image.shape
        p_in = win.to_input(pts)
        b_in = None if box is None else win.to_input(np.asarray(box, float).reshape(2, 2)).ravel()
        points = torch.as_tensor(p_in, dtype=torch.float32, device=self.device)[None]
        labels = torch.as_tensor(np.asarray(point_labels).reshape(1, -1), dtype=torch.int32, device=self.device)
        boxes = None if b_in is None else torch.as_tensor(b_in, dtype=torch.float32, device=self.device)[None]
        with autocast(self.device):
            low, iou = self.forward.decode(feats, points, labels, boxes, multimask_output)
        low = low.float()
        if self.policy.mode == "whole":
            full = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
            full = F.interpolate(full, size=(h, w), mode="bilinear", align_corners=False)[0].cpu().numpy()
        else:
            up = F.interpolate(low, size=(win.side_h, win.side), mode="bilinear", align_corners=False)[0].cpu().numpy()
            full = win.paste(up, (h, w), fill=-32.0)
        masks = full if return_logits else full > 0.0
        scores = iou[0].float().cpu().numpy()
        if self.calibrated and self.spec.iou_calibration:
            cal = self.spec.iou_calibration
            scores = np.interp(scores, cal["x"], cal["y"]).astype(np.float32)
        passes = self.policy.refine_passes if refine_passes is None else refine_passes
        if passes and region_xyxy is None and self.policy.mode == "window":
            best = full[int(np.argmax(scores))] > 0.0
            if best.any():
                return self.predict(pts, point_labels, box, multimask_output, region_xyxy=mask_bbox_xyxy(best),
                                    return_logits=return_logits, refine_passes=passes - 1)
        return masks, scores, low[0].cpu().numpy()
