"""Box validation, scaling and batched crop + resize (``torchvision.ops.roi_align``) for region embeddings.

Conventions: boxes are float ``[K, 4]`` absolute ``(x1, y1, x2, y2)`` in pixel coordinates of the
image (pixel ``i`` covers ``[i, i + 1)``). A box is valid when finite, of positive width and height, and
overlapping the image. Boxes (and their enlarged versions) are *clipped* to the image: a crop never
shows padding, so enlarging a box at the image border changes its aspect ratio instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = [
    "valid_box_mask",
    "check_boxes",
    "check_image",
    "scale_and_clip_boxes",
    "crop_and_resize",
]


def valid_box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """``[K]`` bool: finite, positive area, and overlapping the ``height x width`` image."""
    finite = torch.isfinite(boxes).all(dim=1)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    positive = (x2 > x1) & (y2 > y1)
    overlaps = (x1 < width) & (y1 < height) & (x2 > 0) & (y2 > 0)
    return finite & positive & overlaps


def check_image(image: Tensor, *, index: int) -> None:
    """Raise ``ValueError`` unless ``image`` is a uint8 ``[3, H, W]`` tensor."""
    if (
        not isinstance(image, Tensor)
        or image.dtype != torch.uint8
        or image.ndim != 3
        or image.shape[0] != 3
    ):
        desc = (
            f"{tuple(image.shape)} {image.dtype}"
            if isinstance(image, Tensor)
            else type(image).__name__
        )
        raise ValueError(f"image {index}: expected a uint8 RGB tensor [3, H, W], got {desc}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image {index}: empty image of shape {tuple(image.shape)}")


def check_boxes(boxes: Tensor, height: int, width: int, *, image_index: int) -> Tensor:
    """Validate ``[K, 4]`` boxes of image ``image_index``; returns them as float32.

    Raises:
        ValueError: wrong shape, or a box that is non-finite, has zero/negative area or lies fully
            outside the image (naming the image and box index).
    """
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        desc = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"image {image_index}: boxes must be a [K, 4] xyxy tensor, got {desc}")
    boxes = boxes.float()
    bad = (~valid_box_mask(boxes, height, width)).nonzero().flatten()
    if bad.numel():
        j = int(bad[0])
        box = boxes[j].tolist()
        if not torch.isfinite(boxes[j]).all():
            why = "non-finite coordinates"
        elif box[2] <= box[0] or box[3] <= box[1]:
            why = "zero or negative area"
        else:
            why = f"lies fully outside the {width}x{height} image"
        raise ValueError(
            f"image {image_index}, box {j} {box}: {why} ({bad.numel()} invalid boxes in this image; "
            f"filter them with distill.teachers.valid_box_mask)"
        )
    return boxes


def scale_and_clip_boxes(boxes: Tensor, scales: Sequence[float], height: int, width: int) -> Tensor:
    """Enlarge each box by every scale around its center, clip to the image.

    Returns:
        ``[K * len(scales), 4]``, box-major (rows ``k * len(scales) + s``).
    """
    scale = torch.as_tensor(list(scales), dtype=boxes.dtype, device=boxes.device)
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    half = half[:, None, :] * scale[None, :, None]  # [K, S, 2]
    out = torch.cat([center[:, None] - half, center[:, None] + half], dim=2)
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    out = torch.minimum(out.clamp(min=0), limits)
    return out.reshape(-1, 4)


def crop_and_resize(image: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop ``boxes`` from one image and resize each to ``size`` in one batched ``roi_align`` call.

    Args:
        image: ``[3, H, W]`` (uint8 or float; converted to float32 on its device).
        boxes: ``[R, 4]`` xyxy inside the image (clip first).
        size: output ``(h, w)``.

    Returns:
        ``[R, 3, h, w]`` float32 in the image's value range. ``aligned=True`` treats pixel ``i`` as
        covering ``[i, i + 1)``; the adaptive sampling ratio (``ceil(box / size)`` samples per bin and axis)
        averages when shrinking, i.e. an antialiased bilinear resize.
    """
    feats = image.float()[None]
    return roi_align(
        feats,
        [boxes.to(feats)],
        output_size=size,
        spatial_scale=1.0,
        sampling_ratio=0,
        aligned=True,
    )
