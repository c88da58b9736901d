"""The frozen CLIP teacher inside MMSeg models: MaskCLIP pixel scores at input resolution.

The teacher config is a plain dict in the mmengine config, e.g.::

    teacher = dict(type='clip', model_name='ViT-B-16', pretrained='openai', model_config=None, precision='fp32')

Models turn it into a ``distill.teachers.TeacherSpec`` (``TeacherSpec.from_mapping``: ``type``
names a ``distill.teachers`` registry entry, the rest are its keyword arguments, ``device`` is
chosen by the model) and keep a ``distill.teachers.TeacherHandle``: the teacher stays *outside* the
module tree, so it is never saved in checkpoints, never seen by optimizers or DDP, and costs nothing
when a checkpoint is only evaluated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.teachers import Teacher

__all__ = ["dense_pixel_logits"]


def dense_pixel_logits(
    teacher: Teacher,
    images: Tensor,
    classifier: Tensor,
    *,
    key_smoothing: float | None = None,
    prompt_denoise: float | None = None,
    key_norm: str = "spatial",
) -> Tensor:
    """MaskCLIP scores of ``classifier`` classes at every input pixel.

    The uint8 RGB batch ``[B, 3, H, W]`` is resized to the nearest multiple of the teacher's dense
    stride, scored by ``teacher.pixel_logits`` at feature resolution, and bilinearly upsampled back.

    Returns:
        ``[B, N, H, W]`` float32 on ``images.device``.
    """
    height, width = images.shape[-2:]
    stride = getattr(teacher, "dense_stride", 1)
    new_h, new_w = (
        max(stride, round(height / stride) * stride),
        max(stride, round(width / stride) * stride),
    )
    pixels = images
    if (new_h, new_w) != (height, width):
        pixels = F.interpolate(
            images.float(), size=(new_h, new_w), mode="bilinear", align_corners=False
        )
        pixels = pixels.round().clamp_(0, 255).to(torch.uint8)
    logits = teacher.pixel_logits(
        pixels.to(teacher.device),
        classifier,
        key_smoothing=key_smoothing,
        prompt_denoise=prompt_denoise,
        key_norm=key_norm,
    )
    logits = F.interpolate(
        logits.float(), size=(height, width), mode="bilinear", align_corners=False
    )
    return logits.to(images.device)
