"""From per-class CAMs to a pseudo-mask and a confidence map (CLIP-ES ``eval_cam(_with_crf).py``).

``scores = [ (1 - max_k cam_k) ** bg_power, cam_1, ..., cam_K ]`` per pixel (background first). The
per-pixel probabilities are the scores normalized to sum 1 (exactly the marginals DenseCRF starts from,
since its unary is ``-log(score)``) or, with CRF, the CRF marginals. The pseudo-label is the argmax, the
confidence its probability; pixels with ``confidence < threshold`` become ``ignore_index`` in training
masks (CLIP-ES: 0.95 on CRF confidence).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "background_scores",
    "normalize_scores",
    "label_and_confidence",
    "ignore_low_confidence",
    "confidence_to_uint8",
    "confidence_from_uint8",
]


def background_scores(cams: Tensor, *, bg_power: float = 1.0) -> Tensor:
    """``[K, H, W]`` CAMs in ``[0, 1]`` -> ``[K + 1, H, W]`` scores, channel 0 = ``(1 - max cam) ** bg_power``."""
    if cams.ndim != 3:
        raise ValueError(f"cams must be [K, H, W], got {tuple(cams.shape)}")
    if bg_power <= 0:
        raise ValueError(f"bg_power must be > 0, got {bg_power}")
    cams = cams.clamp(0, 1)
    peak = (
        cams.amax(dim=0, keepdim=True)
        if cams.shape[0]
        else torch.zeros(1, *cams.shape[1:], dtype=cams.dtype, device=cams.device)
    )
    return torch.cat([(1 - peak) ** bg_power, cams])


def normalize_scores(scores: Tensor) -> Tensor:
    """``[C, H, W]`` non-negative scores -> per-pixel probabilities (sum 1; uniform where all are 0)."""
    total = scores.sum(dim=0, keepdim=True)
    uniform = torch.full_like(scores, 1.0 / scores.shape[0])
    return torch.where(total > 0, scores / total.clamp_min(torch.finfo(scores.dtype).tiny), uniform)


def label_and_confidence(probs: Tensor) -> tuple[Tensor, Tensor]:
    """``[C, H, W]`` probabilities -> ``(argmax [H, W] int64, max probability [H, W])``."""
    confidence, label = probs.max(dim=0)
    return label, confidence


def ignore_low_confidence(
    label: Tensor, confidence: Tensor, *, threshold: float, ignore_index: int = 255
) -> Tensor:
    """``label`` with ``ignore_index`` where ``confidence < threshold``."""
    return label.masked_fill(confidence < threshold, ignore_index)


def confidence_to_uint8(confidence: np.ndarray | Tensor) -> np.ndarray:
    """``[H, W]`` confidence in ``[0, 1]`` -> uint8 ``round(255 * c)`` (the stored confidence PNG)."""
    values = (
        confidence.detach().cpu().numpy()
        if isinstance(confidence, Tensor)
        else np.asarray(confidence)
    )
    return np.clip(np.rint(values.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def confidence_from_uint8(stored: np.ndarray) -> np.ndarray:
    """Inverse of :func:`confidence_to_uint8` (float32, ``+-0.5/255``)."""
    return stored.astype(np.float32) / 255.0
