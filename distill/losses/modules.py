"""Thin ``nn.Module`` wrappers over :mod:`distill.losses.functional`, a FIFO embedding queue for
contrastive losses, and a small loss registry (``LOSSES`` / ``build_loss``)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from . import functional as LF

__all__ = [
    "LOSSES", "register_loss", "build_loss",
    "L1RegionDistillLoss", "SymmetricInfoNCELoss", "PixelTextCrossEntropyLoss",
    "PseudoLabelCrossEntropyLoss", "KLDistillLoss", "EmbeddingQueue",
]

LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a loss module to ``LOSSES`` under ``name``."""
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered ({LOSSES[name].__name__})")
        LOSSES[name] = cls
        return cls
    return decorator


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate the loss registered as ``name`` with ``kwargs``."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; registered: {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)


@register_loss("l1_region")
class L1RegionDistillLoss(nn.Module):
    """``weight * l1_region_distill(student [N,D], teacher [N,D], valid=[N])`` (ViLD, weight 0.5 for R50)."""

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> Tensor:
        return self.weight * LF.l1_region_distill(student, teacher, valid=valid)


@register_loss("symmetric_infonce")
class SymmetricInfoNCELoss(nn.Module):
    """``weight * symmetric_infonce(a [N,D], b [N,D], ...)`` (BARON bag loss, scale 30 COCO / 20 LVIS)."""

    def __init__(self, *, temperature: float = 30.0, weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.weight = weight

    def forward(self, a: Tensor, b: Tensor, *, queue_a: Tensor | None = None, queue_b: Tensor | None = None,
                image_ids: Tensor | None = None) -> Tensor:
        return self.weight * LF.symmetric_infonce(a, b, temperature=self.temperature, queue_a=queue_a,
                                                  queue_b=queue_b, image_ids=image_ids)


@register_loss("pixel_text_ce")
class PixelTextCrossEntropyLoss(nn.Module):
    """``weight * pixel_text_cross_entropy(pixel [B,D,H,W], text [N,D], target [B,H,W])`` (LSeg)."""

    def __init__(self, *, temperature: float = 0.07, ignore_index: int = 255, weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.ignore_index = ignore_index
        self.weight = weight

    def forward(self, pixel_emb: Tensor, text_emb: Tensor, target: Tensor) -> Tensor:
        return self.weight * LF.pixel_text_cross_entropy(pixel_emb, text_emb, target, temperature=self.temperature,
                                                         ignore_index=self.ignore_index)


@register_loss("pseudo_label_ce")
class PseudoLabelCrossEntropyLoss(nn.Module):
    """``weight * pseudo_label_cross_entropy(logits [B,N,H,W], pseudo [B,H,W], confidence=[B,H,W])``."""

    def __init__(self, *, threshold: float | None = None, ignore_index: int = 255, weight: float = 1.0) -> None:
        super().__init__()
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.weight = weight

    def forward(self, logits: Tensor, pseudo: Tensor, confidence: Tensor | None = None) -> Tensor:
        return self.weight * LF.pseudo_label_cross_entropy(logits, pseudo, confidence=confidence,
                                                           threshold=self.threshold, ignore_index=self.ignore_index)


@register_loss("kl_distill")
class KLDistillLoss(nn.Module):
    """``weight * kl_distill(student_logits, teacher_logits, temperature=T, dim=dim)``."""

    def __init__(self, *, temperature: float = 1.0, dim: int = 1, weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.dim = dim
        self.weight = weight

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return self.weight * LF.kl_distill(student_logits, teacher_logits, temperature=self.temperature, dim=self.dim)


class EmbeddingQueue(nn.Module):
    """FIFO queue of the last ``size`` embeddings (BARON keeps 1024 per feature type).

    Stored as buffers (saved in checkpoints, moved with ``.to()``). Enqueued values are detached.
    ``get()`` returns the filled part, [min(seen, size), dim], oldest first.
    """

    def __init__(self, dim: int, *, size: int = 1024) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"EmbeddingQueue needs dim > 0 and size > 0, got dim={dim}, size={size}")
        self.size = size
        self.register_buffer("data", torch.zeros(size, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # total ever enqueued

    @torch.no_grad()
    def enqueue(self, x: Tensor) -> None:
        """Append [K, dim] rows; the oldest rows are dropped once the queue is full."""
        if x.dim() != 2 or x.shape[1] != self.data.shape[1]:
            raise ValueError(f"EmbeddingQueue expects [K, {self.data.shape[1]}], got {tuple(x.shape)}")
        x = x.detach().to(self.data)[-self.size:]
        k = x.shape[0]
        start = int(self.count) % self.size
        first = min(k, self.size - start)
        self.data[start:start + first] = x[:first]
        self.data[:k - first] = x[first:]
        self.count += k

    def get(self) -> Tensor:
        """[min(count, size), dim] stored embeddings, oldest first."""
        n = int(self.count)
        if n < self.size:
            return self.data[:n]
        start = n % self.size
        return torch.cat([self.data[start:], self.data[:start]])
