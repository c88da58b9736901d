"""The cosine classifier of open-vocabulary students: scaled dot products with text embeddings.

Both layouts compute ``embedding . class_embedding / temperature`` with inputs L2-normalized by the
caller: :func:`cosine_logits` for rows (detectors' regions), :func:`dense_cosine_logits` for
feature maps (segmentors' pixels, channel dimension 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cosine_logits", "dense_cosine_logits"]


def cosine_logits(
    embeddings: Tensor, classifier: Tensor, *, temperature: float, background: Tensor | None = None
) -> Tensor:
    """``embeddings [R, D] . classifier [C, D]^T / temperature`` (both L2-normalized by the caller).

    With ``background [D]`` the result is ``[R, C + 1]``, the background logit last (Detectron2's
    convention).
    """
    logits = embeddings @ classifier.t()
    if background is not None:
        logits = torch.cat([logits, embeddings @ background.unsqueeze(1)], dim=1)
    return logits / temperature


def dense_cosine_logits(pixels: Tensor, classifier: Tensor, *, temperature: float) -> Tensor:
    """``[B, C, H, W]`` logits of per-pixel embeddings ``pixels [B, D, H, W]`` against
    ``classifier [C, D]`` (both L2-normalized by the caller): :func:`cosine_logits` at every pixel,
    computed without moving the channel dimension.

    A background class (MMSeg: label 0) is a row of ``classifier``.
    """
    return torch.einsum("bdhw,nd->bnhw", pixels, classifier) / temperature
