"""The test-time resize of ovdistill's detectors (Detectron2's ``ResizeShortestEdge(MIN_SIZE_TEST,
MAX_SIZE_TEST)``, what ``DefaultPredictor`` feeds the eager model), shared by the predictor and the
exported-model runtime, and the mapping of boxes back to the original image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from detectron2.data import transforms as T
from torch import Tensor

__all__ = ["PreparedImage", "prepare_image", "rescale_boxes"]


@dataclass(frozen=True)
class PreparedImage:
    """An image after the test transform: ``tensor [3, H, W]`` float (0-255), its size
    ``image_hw`` and ``scale`` = (resized / original height, width): divide boxes by it."""

    tensor: Tensor
    image_hw: tuple[int, int]
    scale: tuple[float, float]


def prepare_image(image: np.ndarray, *, min_size: int, max_size: int) -> PreparedImage:
    """Resize ``image [H0, W0, 3]`` uint8 (model channel order) like Detectron2's test transform
    ``ResizeShortestEdge(min_size, max_size)`` (bilinear; ``min_size`` 0 keeps the size, as
    there)."""
    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[2] != 3
        or 0 in image.shape
    ):
        shape = getattr(image, "shape", type(image))
        raise ValueError(f"expected an [H, W, 3] image array, got {shape}")
    h0, w0 = image.shape[:2]
    new_h, new_w = (h0, w0)
    if min_size > 0:
        new_h, new_w = T.ResizeShortestEdge.get_output_shape(h0, w0, min_size, max_size)
    resized = image
    if (new_h, new_w) != (h0, w0):
        resized = T.ResizeTransform(h0, w0, new_h, new_w).apply_image(image)
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
    return PreparedImage(tensor, (new_h, new_w), (new_h / h0, new_w / w0))


def rescale_boxes(boxes: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Boxes ``[N, 4]`` of a prepared (resized) image, clipped to it, in the original image's
    pixels."""
    h, w = prepared.image_hw
    boxes = np.asarray(boxes, dtype=np.float32).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w) / prepared.scale[1]
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h) / prepared.scale[0]
    return boxes
