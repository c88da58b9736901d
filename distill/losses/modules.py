"""Thin ``nn.Module`` wrappers over :mod:`distill.losses.functional`, a FIFO embedding queue for
contrastive losses, and a small loss registry (``LOSSES`` / ``build_loss``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import functional as LF

__all__ = [
    "LOSSES",
    "register_loss",
    "build_loss",
    "L1RegionDistillLoss",
    "SymmetricInfoNCELoss",
    "PixelTextCrossEntropyLoss",
    "PseudoLabelCrossEntropyLoss",
    "KLDistillLoss",
    "EmbeddingQueue",
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

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        *,
        queue_a: Tensor | None = None,
        queue_b: Tensor | None = None,
        image_ids: Tensor | None = None,
        query_ids: Tensor | None = None,
        queue_a_ids: Tensor | None = None,
        queue_b_ids: Tensor | None = None,
    ) -> Tensor:
        return self.weight * LF.symmetric_infonce(
            a,
            b,
            temperature=self.temperature,
            queue_a=queue_a,
            queue_b=queue_b,
            image_ids=image_ids,
            query_ids=query_ids,
            queue_a_ids=queue_a_ids,
            queue_b_ids=queue_b_ids,
        )


@register_loss("pixel_text_ce")
class PixelTextCrossEntropyLoss(nn.Module):
    """``weight * pixel_text_cross_entropy(pixel [B,D,H,W], text [N,D], target [B,H,W])`` (LSeg)."""

    def __init__(
        self, *, temperature: float = 0.07, ignore_index: int = 255, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.ignore_index = ignore_index
        self.weight = weight

    def forward(self, pixel_emb: Tensor, text_emb: Tensor, target: Tensor) -> Tensor:
        return self.weight * LF.pixel_text_cross_entropy(
            pixel_emb,
            text_emb,
            target,
            temperature=self.temperature,
            ignore_index=self.ignore_index,
        )


@register_loss("pseudo_label_ce")
class PseudoLabelCrossEntropyLoss(nn.Module):
    """``weight * pseudo_label_cross_entropy(logits [B,N,H,W], pseudo [B,H,W], confidence=[B,H,W])``."""

    def __init__(
        self, *, threshold: float | None = None, ignore_index: int = 255, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.weight = weight

    def forward(self, logits: Tensor, pseudo: Tensor, confidence: Tensor | None = None) -> Tensor:
        return self.weight * LF.pseudo_label_cross_entropy(
            logits,
            pseudo,
            confidence=confidence,
            threshold=self.threshold,
            ignore_index=self.ignore_index,
        )


@register_loss("kl_distill")
class KLDistillLoss(nn.Module):
    """``weight * kl_distill(student_logits, teacher_logits, temperature=T, dim=dim)``."""

    def __init__(self, *, temperature: float = 1.0, dim: int = 1, weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.dim = dim
        self.weight = weight

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return self.weight * LF.kl_distill(
            student_logits, teacher_logits, temperature=self.temperature, dim=self.dim
        )


class EmbeddingQueue(nn.Module):
    """FIFO queue of the last ``size`` embeddings (BARON keeps 1024 per feature type), each with an
    integer id (e.g. its image id, for masking same-image negatives; -1 when not given).

    Stored as buffers (saved in checkpoints, moved with ``.to()``). Enqueued values are detached.
    ``get()`` returns a copy of the filled part, [min(seen, size), dim], oldest first; ``get_ids()`` its ids.
    """

    def __init__(self, dim: int, *, size: int = 1024) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(
                f"EmbeddingQueue needs dim > 0 and size > 0, got dim={dim}, size={size}"
            )
        self.size = size
        self.register_buffer("data", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # total ever enqueued

    @torch.no_grad()
    def enqueue(self, x: Tensor, ids: Tensor | None = None) -> None:
        """Append [K, dim] rows (with [K] integer ``ids``); the oldest rows are dropped once full."""
        if x.dim() != 2 or x.shape[1] != self.data.shape[1]:
            raise ValueError(
                f"EmbeddingQueue expects [K, {self.data.shape[1]}], got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("EmbeddingQueue: enqueued embeddings contain NaN or inf values")
        if ids is None:
            ids = torch.full((x.shape[0],), -1, dtype=torch.long)
        if ids.shape != (x.shape[0],):
            raise ValueError(
                f"EmbeddingQueue: ids must have shape [{x.shape[0]}], got {tuple(ids.shape)}"
            )
        x = x.detach().to(self.data)[-self.size :]
        ids = ids.detach().to(self.ids)[-self.size :]
        k = x.shape[0]
        start = int(self.count) % self.size
        first = min(k, self.size - start)
        self.data[start : start + first] = x[:first]
        self.data[: k - first] = x[first:]
        self.ids[start : start + first] = ids[:first]
        self.ids[: k - first] = ids[first:]
        self.count += k

    def _order(self, buffer: Tensor) -> Tensor:
        """A copy (later enqueues must not change tensors an autograd graph saved)."""
        n = int(self.count)
        if n < self.size:
            return buffer[:n].clone()
        start = n % self.size
        return torch.cat([buffer[start:], buffer[:start]])

    def get(self) -> Tensor:
        """[min(count, size), dim] stored embeddings, oldest first."""
        return self._order(self.data)

    def get_ids(self) -> Tensor:
        """[min(count, size)] ids of :meth:`get`'s rows."""
        return self._order(self.ids)


@register_loss("queued_infonce")
class QueuedInfoNCELoss(nn.Module):
    """BARON's bag / single-region loss: :func:`symmetric_infonce` with FIFO queues of past embeddings.

    ``forward(student [N, D], teacher [N, D], *, image_ids [N], group_ids [N] | None)``:

    * in-batch pairs with equal ``group_ids`` (e.g. two permutations of one bag) are not negatives;
    * queue rows from the same image as a query are not negatives (``image_ids`` vs the queue's ids);
    * afterwards (training only) both sides are enqueued with their image ids.

    Scale ``temperature`` (BARON bag: 30 COCO / 20 LVIS; single region: 50 / 30), queues of ``queue_size``
    (BARON: 1024; 0 disables them), loss multiplied by ``weight``.
    """

    def __init__(
        self, dim: int, *, temperature: float = 30.0, weight: float = 1.0, queue_size: int = 1024
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.student_queue = EmbeddingQueue(dim, size=queue_size) if queue_size > 0 else None
        self.teacher_queue = EmbeddingQueue(dim, size=queue_size) if queue_size > 0 else None

    def forward(
        self,
        student: Tensor,
        teacher: Tensor,
        *,
        image_ids: Tensor,
        group_ids: Tensor | None = None,
    ) -> Tensor:
        queues = self.student_queue is not None
        loss = LF.symmetric_infonce(
            student,
            teacher,
            temperature=self.temperature,
            image_ids=group_ids,
            query_ids=image_ids,
            queue_a=self.student_queue.get() if queues else None,
            queue_b=self.teacher_queue.get() if queues else None,
            queue_a_ids=self.student_queue.get_ids() if queues else None,
            queue_b_ids=self.teacher_queue.get_ids() if queues else None,
        )
        if queues and self.training and student.shape[0]:
            self.student_queue.enqueue(student, image_ids)
            self.teacher_queue.enqueue(teacher, image_ids)
        return self.weight * loss
