"""The frozen CLIP teacher inside MMSeg models: built from the mmengine config, lazily, on the model's device.

The teacher config is a plain dict in the mmengine config, e.g.::

    teacher = dict(type='clip', model_name='ViT-B-16', pretrained='openai', model_config=None, precision='fp32')

``type`` names a ``distill.teachers`` registry entry; the rest are its keyword arguments (``device`` is
chosen here). ``TeacherHandle`` keeps the teacher *outside* the module tree, so it is never saved in
checkpoints, never seen by optimizers or DDP, and costs nothing when a checkpoint is only evaluated.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.teachers import Teacher, build_teacher

__all__ = ["build_teacher_from_cfg", "TeacherHandle", "dense_pixel_logits"]


def build_teacher_from_cfg(cfg: Mapping, *, device: str | torch.device = "cpu") -> Teacher:
    """Build the teacher described by ``cfg`` (``type`` + keyword arguments) on ``device``."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"teacher config must be a dict, got {type(cfg).__name__}")
    kwargs = dict(copy.deepcopy(dict(cfg)))
    name = kwargs.pop("type", "clip")
    kwargs.pop("device", None)
    if name == "clip" and not kwargs.get("model_name"):
        raise ValueError(f"teacher config needs model_name, got {dict(cfg)}")
    return build_teacher(name, device=device, **kwargs)


class TeacherHandle:
    """Builds the teacher on first use and keeps one instance per device (not an ``nn.Module``)."""

    def __init__(self, cfg: Mapping) -> None:
        if not isinstance(cfg, Mapping):
            raise ValueError(f"teacher config must be a dict, got {type(cfg).__name__}")
        self.cfg = dict(cfg)
        self._teachers: dict[str, Teacher] = {}

    def get(self, device: str | torch.device) -> Teacher:
        key = str(torch.device(device))
        if key not in self._teachers:
            self._teachers[key] = build_teacher_from_cfg(self.cfg, device=key)
        return self._teachers[key]

    def __deepcopy__(self, memo: dict) -> "TeacherHandle":
        return TeacherHandle(copy.deepcopy(self.cfg, memo))   # copies rebuild their own teacher lazily


def dense_pixel_logits(teacher: Teacher, images: Tensor, classifier: Tensor, *, key_smoothing: float | None = None,
                       prompt_denoise: float | None = None, key_norm: str = "channel") -> Tensor:
    """MaskCLIP scores of ``classifier`` classes at every input pixel.

    The uint8 RGB batch ``[B, 3, H, W]`` is resized to the nearest multiple of the teacher's dense
    stride, scored by ``teacher.pixel_logits`` at feature resolution, and bilinearly upsampled back.

    Returns:
        ``[B, N, H, W]`` float32 on ``images.device``.
    """
    height, width = images.shape[-2:]
    stride = getattr(teacher, "dense_stride", 1)
    new_h, new_w = max(stride, round(height / stride) * stride), max(stride, round(width / stride) * stride)
    pixels = images
    if (new_h, new_w) != (height, width):
        pixels = F.interpolate(images.float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
        pixels = pixels.round().clamp_(0, 255).to(torch.uint8)
    logits = teacher.pixel_logits(pixels.to(teacher.device), classifier, key_smoothing=key_smoothing,
                                  prompt_denoise=prompt_denoise, key_norm=key_norm)
    logits = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return logits.to(images.device)

