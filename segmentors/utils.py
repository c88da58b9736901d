"""Small helpers shared by the segmentors: ground-truth rewriting, teacher input images, slide inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import Tensor

__all__ = [
    "stack_gt",
    "with_gt",
    "ignore_labels",
    "image_region_mask",
    "teacher_images",
    "slide_inference",
]


def stack_gt(data_samples: Sequence[SegDataSample]) -> Tensor:
    """``[B, H, W]`` long ground truth of a (padded, equally sized) batch."""
    return torch.stack([s.gt_sem_seg.data.squeeze(0) for s in data_samples]).long()


def with_gt(data_samples: Sequence[SegDataSample], labels: Tensor) -> list[SegDataSample]:
    """Copies of ``data_samples`` (same metainfo) whose ``gt_sem_seg`` is ``labels[b]`` ([B, H, W])."""
    if labels.ndim != 3 or labels.shape[0] != len(data_samples):
        raise ValueError(f"labels must be [B={len(data_samples)}, H, W], got {tuple(labels.shape)}")
    out = []
    for sample, label in zip(data_samples, labels):
        new = SegDataSample(metainfo=sample.metainfo)
        new.gt_sem_seg = PixelData(data=label[None].to(sample.gt_sem_seg.data.dtype))
        out.append(new)
    return out


def ignore_labels(
    data_samples: Sequence[SegDataSample], classes: Sequence[int], *, ignore_index: int = 255
) -> list[SegDataSample]:
    """Copies of ``data_samples`` whose pixels labelled with any of ``classes`` become ``ignore_index``."""
    gt = stack_gt(data_samples)
    drop = torch.isin(gt, torch.tensor(list(classes), device=gt.device))
    return with_gt(data_samples, gt.masked_fill(drop, ignore_index))


def image_region_mask(
    data_samples: Sequence[SegDataSample], size: tuple[int, int], device: torch.device
) -> Tensor:
    """``[B, H, W]`` bool: True inside each image, False on batch padding (from ``img_shape``)."""
    mask = torch.zeros((len(data_samples), *size), dtype=torch.bool, device=device)
    for b, sample in enumerate(data_samples):
        h, w = sample.metainfo.get("img_shape", size)[:2]
        mask[b, :h, :w] = True
    return mask


def teacher_images(inputs: Tensor, data_preprocessor: torch.nn.Module) -> Tensor:
    """Undo ``SegDataPreProcessor`` normalization: ``[B, 3, H, W]`` float inputs -> uint8 RGB.

    The preprocessor must convert MMSeg's BGR loading to RGB (``bgr_to_rgb=True``), the MMSeg default.
    """
    if not getattr(data_preprocessor, "channel_conversion", False):
        raise ValueError(
            "teacher-backed segmentors need data_preprocessor=dict(type='SegDataPreProcessor', "
            "bgr_to_rgb=True, ...) so that model inputs are RGB"
        )
    mean, std = getattr(data_preprocessor, "mean", None), getattr(data_preprocessor, "std", None)
    pixels = inputs.float()
    if mean is not None and std is not None:
        pixels = pixels * std.to(pixels) + mean.to(pixels)
    return pixels.round().clamp_(0, 255).to(torch.uint8)


def slide_inference(
    fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    *,
    num_classes: int,
    crop_size: tuple[int, int],
    stride: tuple[int, int],
) -> Tensor:
    """Average ``fn`` over overlapping crops.

    Args:
        fn: ``[B, 3, h, w]`` crop -> ``[B, num_classes, h, w]`` logits at crop resolution.
        inputs: ``[B, 3, H, W]``.
        crop_size, stride: ``(h, w)`` window and step; windows are shifted inside the image at the borders.

    Returns:
        ``[B, num_classes, H, W]`` mean logits.
    """
    (h_crop, w_crop), (h_stride, w_stride) = crop_size, stride
    if min(h_crop, w_crop, h_stride, w_stride) <= 0:
        raise ValueError(f"crop_size {crop_size} and stride {stride} must be positive")
    batch, _, height, width = inputs.shape
    out = inputs.new_zeros((batch, num_classes, height, width), dtype=torch.float32)
    count = inputs.new_zeros((1, 1, height, width), dtype=torch.float32)
    rows = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    cols = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * h_stride + h_crop, height), min(c * w_stride + w_crop, width)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            logits = fn(inputs[:, :, y1:y2, x1:x2]).float()
            out += F.pad(logits, (x1, width - x2, y1, height - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return out / count
