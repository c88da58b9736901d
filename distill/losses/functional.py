"""Distillation losses as pure functions.

Every function checks its tensor inputs for NaN/inf (``ValueError`` naming the argument) and
returns a scalar tensor that stays connected to the autograd graph even when nothing contributes
(e.g. no valid region), so ``loss.backward()`` never fails on an empty batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.vocab import dense_cosine_logits

__all__ = [
    "l1_region_distill",
    "symmetric_infonce",
    "pixel_text_logits",
    "pixel_text_cross_entropy",
    "pseudo_label_cross_entropy",
    "kl_distill",
]


def _check_finite(name: str, x: Tensor) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def _check_dims(name: str, x: Tensor, ndim: int, layout: str) -> None:
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")


def _zero(*tensors: Tensor) -> Tensor:
    """A scalar 0 that depends on ``tensors`` (keeps the graph for empty batches)."""
    return sum(
        (t.sum() * 0.0 for t in tensors if t.requires_grad),
        torch.zeros((), device=tensors[0].device),
    )


def l1_region_distill(student: Tensor, teacher: Tensor, *, valid: Tensor | None = None) -> Tensor:
    """ViLD's region-embedding distillation loss.

    ``sum_d |student[i, d] - teacher[i, d]|`` averaged over the valid regions ``i``.

    Args:
        student: [N, D] student region embeddings (expected L2-normalized; not renormalized).
        teacher: [N, D] teacher region embeddings (expected L2-normalized; not renormalized).
        valid: optional bool [N]; regions marked False (e.g. padding) are left out.

    Returns:
        Scalar; 0 (connected to ``student``'s graph) when no region is valid.
    """
    _check_dims("student", student, 2, "[N, D]")
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher shape {tuple(teacher.shape)} != student shape {tuple(student.shape)}"
        )
    _check_finite("student", student)
    _check_finite("teacher", teacher)
    per_region = (student - teacher.to(student.dtype)).abs().sum(dim=1)
    if valid is not None:
        if valid.shape != (student.shape[0],) or valid.dtype != torch.bool:
            raise ValueError(
                f"valid must be a bool tensor of shape [{student.shape[0]}], "
                f"got {valid.dtype} {tuple(valid.shape)}"
            )
        per_region = per_region[valid]
    if per_region.numel() == 0:
        return _zero(student)
    return per_region.mean()


def _same_group_mask(image_ids: Tensor, n: int) -> Tensor:
    """[n, n] bool: True where i != j and image_ids[i] == image_ids[j]."""
    if image_ids.shape != (n,):
        raise ValueError(f"image_ids must have shape [{n}], got {tuple(image_ids.shape)}")
    mask = image_ids[:, None] == image_ids[None, :]
    mask.fill_diagonal_(False)
    return mask


def _infonce_direction(
    queries: Tensor,
    keys: Tensor,
    queue: Tensor | None,
    scale: float,
    mask: Tensor | None,
    queue_mask: Tensor | None = None,
) -> Tensor:
    logits = scale * queries @ keys.t()  # [N, N]
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    if queue is not None and queue.shape[0] > 0:
        queue_logits = scale * queries @ queue.to(queries.dtype).t()  # [N, Q]
        if queue_mask is not None:
            queue_logits = queue_logits.masked_fill(queue_mask, float("-inf"))
        logits = torch.cat([logits, queue_logits], dim=1)
    target = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits, target)


def _queue_mask(
    name: str, query_ids: Tensor | None, queue: Tensor | None, queue_ids: Tensor | None
) -> Tensor | None:
    """[N, Q] bool: queue entry j has the image id of row i (or None when not requested)."""
    if queue_ids is None or queue is None:
        return None
    if query_ids is None:
        raise ValueError(f"{name} given without query_ids")
    if queue_ids.shape != (queue.shape[0],):
        raise ValueError(
            f"{name} must have shape [{queue.shape[0]}] (one id per queue row), got "
            f"{tuple(queue_ids.shape)}"
        )
    return query_ids[:, None] == queue_ids.to(query_ids.device)[None, :]


def symmetric_infonce(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float = 30.0,
    queue_a: Tensor | None = None,
    queue_b: Tensor | None = None,
    image_ids: Tensor | None = None,
    query_ids: Tensor | None = None,
    queue_a_ids: Tensor | None = None,
    queue_b_ids: Tensor | None = None,
) -> Tensor:
    """BARON's bag-of-regions contrastive loss (symmetric InfoNCE, 0.5 per direction).

    Row ``i`` of ``a`` and row ``i`` of ``b`` form the positive pair. With ``s = temperature``
    (a *scale*, BARON uses 30 on COCO and 20 on LVIS)::

        loss = 0.5 * CE_i( s * a_i . [b ; queue_b]^T , i ) + 0.5 * CE_i( s * b_i . [a ; queue_a]^T , i )

    Masking: when ``image_ids`` is given, every in-batch pair ``(i, j)`` with ``i != j`` and
    ``image_ids[i] == image_ids[j]`` is removed from both directions' denominators (its logit is
    ``-inf``); the positive ``(i, i)`` is never masked. Any grouping id works, e.g. BARON's bag
    sequence ids, which masks only duplicated bags. Queue entries are *always* negatives: they are
    not masked by ``image_ids``; BARON masks the queue entries that come from the same image as the
    query instead: pass ``query_ids [N]`` (each row's image id) and ``queue_a_ids [Qa]`` /
    ``queue_b_ids [Qb]`` (the image id of each queue row) and entry ``j`` of ``queue_b`` is removed
    from row ``i``'s denominator when ``query_ids[i] == queue_b_ids[j]`` (likewise for ``queue_a``).
    The caller must not enqueue the current batch before calling.

    Args:
        a: [N, D] embeddings (e.g. student bag embeddings), expected L2-normalized.
        b: [N, D] embeddings (e.g. teacher bag embeddings), expected L2-normalized.
        temperature: logit scale ``s`` (logits = s * a . b).
        queue_a: optional [Q, D] past ``a`` embeddings, extra negatives for the ``b -> a`` direction.
        queue_b: optional [Q, D] past ``b`` embeddings, extra negatives for the ``a -> b`` direction.
        image_ids: optional int [N] group id of each row (see Masking).
        query_ids, queue_a_ids, queue_b_ids: optional int image ids for masking queue rows (see Masking).

    Returns:
        Scalar loss; 0 (connected to the graph) when ``N == 0``.
    """
    _check_dims("a", a, 2, "[N, D]")
    if b.shape != a.shape:
        raise ValueError(f"b shape {tuple(b.shape)} != a shape {tuple(a.shape)}")
    _check_finite("a", a)
    _check_finite("b", b)
    for name, queue in (("queue_a", queue_a), ("queue_b", queue_b)):
        if queue is not None:
            if queue.dim() != 2 or queue.shape[1] != a.shape[1]:
                raise ValueError(
                    f"{name} must have shape [Q, {a.shape[1]}], got {tuple(queue.shape)}"
                )
            _check_finite(name, queue)
    n = a.shape[0]
    if n == 0:
        return _zero(a, b)
    if query_ids is not None and query_ids.shape != (n,):
        raise ValueError(f"query_ids must have shape [{n}], got {tuple(query_ids.shape)}")
    mask = _same_group_mask(image_ids.to(a.device), n) if image_ids is not None else None
    mask_b = _queue_mask("queue_b_ids", query_ids, queue_b, queue_b_ids)
    mask_a = _queue_mask("queue_a_ids", query_ids, queue_a, queue_a_ids)
    loss_ab = _infonce_direction(a, b.to(a.dtype), queue_b, temperature, mask, mask_b)
    loss_ba = _infonce_direction(b.to(a.dtype), a, queue_a, temperature, mask, mask_a)
    return 0.5 * loss_ab + 0.5 * loss_ba


def pixel_text_logits(pixel_emb: Tensor, text_emb: Tensor, *, temperature: float = 0.07) -> Tensor:
    """LSeg logits: ``(1 / temperature) * normalize(pixel) . normalize(text)``
    (:func:`distill.vocab.dense_cosine_logits` of the normalized inputs).

    Args:
        pixel_emb: [B, D, H, W] per-pixel embeddings (normalized here along D).
        text_emb: [N, D] class text embeddings (normalized here along D).

    Returns:
        [B, N, H, W] logits.
    """
    _check_dims("pixel_emb", pixel_emb, 4, "[B, D, H, W]")
    _check_dims("text_emb", text_emb, 2, "[N, D]")
    if pixel_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"pixel_emb has D={pixel_emb.shape[1]} but text_emb has D={text_emb.shape[1]}"
        )
    _check_finite("pixel_emb", pixel_emb)
    _check_finite("text_emb", text_emb)
    pixel = F.normalize(pixel_emb, dim=1)
    text = F.normalize(text_emb.to(pixel.dtype), dim=1)
    return dense_cosine_logits(pixel, text, temperature=temperature)


def _masked_mean_ce(logits: Tensor, target: Tensor, keep: Tensor, ignore_index: int) -> Tensor:
    """Mean per-pixel CE over pixels where ``keep`` and target != ignore_index; 0 if none."""
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
    num_classes = logits.shape[1]
    labelled = target != ignore_index
    bad = labelled & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(
            f"target contains label {value} outside [0, {num_classes}) "
            f"(and not ignore_index={ignore_index})"
        )
    keep = keep & labelled
    if not bool(keep.any()):
        return _zero(logits)
    per_pixel = F.cross_entropy(
        logits, target.masked_fill(~keep, 0).long(), reduction="none"
    )  # [B, H, W]
    return per_pixel[keep].mean()


def pixel_text_cross_entropy(
    pixel_emb: Tensor,
    text_emb: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.07,
    ignore_index: int = 255,
) -> Tensor:
    """LSeg's per-pixel cross-entropy over the label set.

    Args:
        pixel_emb: [B, D, H, W] per-pixel embeddings.
        text_emb: [N, D] text embeddings of the N labels.
        target: [B, H, W] integer labels in [0, N) or ``ignore_index``; must match the logits'
            spatial size (upsample ``pixel_emb`` or the logits first).

    Returns:
        Mean CE over non-ignored pixels; 0 (connected to the graph) if every pixel is ignored.
    """
    logits = pixel_text_logits(pixel_emb, text_emb, temperature=temperature)
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match pixel_emb "
            f"[B, H, W] = {(logits.shape[0], *logits.shape[2:])}"
        )
    return _masked_mean_ce(logits, target, torch.ones_like(target, dtype=torch.bool), ignore_index)


def pseudo_label_cross_entropy(
    logits: Tensor,
    pseudo: Tensor,
    *,
    confidence: Tensor | None = None,
    threshold: float | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Cross-entropy against teacher pseudo-labels (MaskCLIP+ / CLIP-ES confidence-guided loss).

    Args:
        logits: [B, N, H, W] student logits.
        pseudo: [B, H, W] pseudo-labels in [0, N) or ``ignore_index``.
        confidence: optional [B, H, W] teacher confidence per pixel.
        threshold: pixels whose ``confidence < threshold`` are ignored (CLIP-ES uses 0.95 on CRF
            confidence); requires ``confidence``.

    Returns:
        Mean CE over kept pixels; 0 (connected to the graph) if none is kept.
    """
    _check_dims("logits", logits, 4, "[B, N, H, W]")
    _check_finite("logits", logits)
    spatial = (logits.shape[0], *logits.shape[2:])
    if pseudo.shape != spatial:
        raise ValueError(
            f"pseudo shape {tuple(pseudo.shape)} does not match logits [B, H, W] = {spatial}"
        )
    keep = torch.ones_like(pseudo, dtype=torch.bool)
    if threshold is not None:
        if confidence is None:
            raise ValueError("threshold given without confidence")
        if confidence.shape != spatial:
            raise ValueError(
                f"confidence shape {tuple(confidence.shape)} does not match logits [B, H, W] = {spatial}"
            )
        _check_finite("confidence", confidence)
        keep = confidence >= threshold
    return _masked_mean_ce(logits, pseudo, keep, ignore_index)


def kl_distill(
    student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0, dim: int = 1
) -> Tensor:
    """Soft-label distillation ``T^2 * KL(softmax(t / T) || softmax(s / T))``.

    The KL is summed over ``dim`` (the class dimension) and averaged over every other position
    (for [B, C] inputs this is PyTorch's ``batchmean``; for dense [B, C, H, W] it is the mean
    over pixels too).

    Args:
        student_logits: [..., C, ...] student logits.
        teacher_logits: same shape as ``student_logits`` (treated as constant targets only if
            the caller detaches them).
    """
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits shape {tuple(teacher_logits.shape)} != "
            f"student_logits shape {tuple(student_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_finite("student_logits", student_logits)
    _check_finite("teacher_logits", teacher_logits)
    if student_logits.numel() == 0:
        return _zero(student_logits)
    log_p_s = F.log_softmax(student_logits / temperature, dim=dim)
    log_p_t = F.log_softmax(teacher_logits.to(log_p_s.dtype) / temperature, dim=dim)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=dim)
    return kl.mean() * temperature**2
