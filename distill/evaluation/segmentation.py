"""Zero-shot semantic segmentation metric: confusion matrix -> IoU, mIoU over seen / unseen, hIoU."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SegmentationMetric"]


def _to_numpy(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        if (
            np.issubdtype(x.dtype, np.floating)
            and np.all(np.isfinite(x))
            and np.all(x == np.round(x))
        ):
            x = x.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x.astype(np.int64, copy=False)


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


class SegmentationMetric:
    """Accumulates a ``num_classes x num_classes`` confusion matrix (rows = ground truth).

    ``IoU_c = TP / (TP + FP + FN)``; a class never present in ground truth nor predicted has
    IoU NaN and is left out of every mean. ``compute()`` returns (in percent):
    ``miou`` (all classes), ``seen_miou``, ``unseen_miou``, ``hiou`` (harmonic mean of the two;
    NaN if either is NaN, 0 if both are 0), ``pixel_acc`` and ``per_class`` {name: IoU}.
    Classes in neither ``seen`` nor ``unseen`` (e.g. background) count only in ``miou``.

    Args:
        num_classes: number of labels, valid labels are ``0 .. num_classes - 1``.
        seen / unseen: disjoint class indices.
        ignore_index: ground-truth label to skip (predictions must never carry it).
        class_names: optional names for ``per_class`` (default ``"0"``, ``"1"``, ...).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        seen: Sequence[int],
        unseen: Sequence[int],
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.seen = [int(c) for c in seen]
        self.unseen = [int(c) for c in unseen]
        out_of_range = [c for c in self.seen + self.unseen if not 0 <= c < num_classes]
        if out_of_range:
            raise ValueError(f"seen/unseen classes {out_of_range} outside [0, {num_classes})")
        if set(self.seen) & set(self.unseen):
            raise ValueError(
                f"seen and unseen overlap: {sorted(set(self.seen) & set(self.unseen))}"
            )
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index {ignore_index} collides with a class label in [0, {num_classes})"
            )
        self.ignore_index = ignore_index
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries, expected {num_classes}")
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> None:
        """Add one prediction / ground-truth pair (any equal shapes, e.g. [H, W] or [B, H, W])."""
        pred, gt = _to_numpy(pred, "pred"), _to_numpy(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        valid = gt != self.ignore_index
        n = self.num_classes
        for name, labels in (("gt", gt[valid]), ("pred", pred[valid])):
            bad = labels[(labels < 0) | (labels >= n)]
            if bad.size:
                raise ValueError(
                    f"{name} contains label {int(bad[0])} outside [0, {n}) "
                    f"(ignore_index is {self.ignore_index})"
                )
        index = gt[valid] * n + pred[valid]
        self.confusion += np.bincount(index, minlength=n * n).reshape(n, n)

    def merge(self, other: SegmentationMetric) -> None:
        """Add another metric's counts (e.g. from another process)."""
        if other.confusion.shape != self.confusion.shape:
            raise ValueError(
                f"cannot merge metrics with {other.num_classes} and {self.num_classes} classes"
            )
        self.confusion += other.confusion

    def iou(self) -> np.ndarray:
        """[num_classes] IoU in [0, 1], NaN for classes absent from both ground truth and prediction."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def compute(self) -> dict[str, Any]:
        iou = self.iou() * 100.0
        seen = _mean(iou[self.seen]) if self.seen else math.nan
        unseen = _mean(iou[self.unseen]) if self.unseen else math.nan
        if math.isnan(seen) or math.isnan(unseen):
            hiou = math.nan
        else:
            hiou = 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)
        total = self.confusion.sum()
        return {
            "miou": _mean(iou),
            "seen_miou": seen,
            "unseen_miou": unseen,
            "hiou": hiou,
            "pixel_acc": float(np.trace(self.confusion) / total * 100.0) if total else math.nan,
            "per_class": {name: float(v) for name, v in zip(self.class_names, iou)},
        }

    def format_table(self) -> str:
        """Plain-text per-class IoU table followed by the summary numbers."""
        result = self.compute()
        roles = {c: "seen" for c in self.seen} | {c: "unseen" for c in self.unseen}
        lines = [f"{'class':<24}{'role':<8}{'IoU':>7}"]
        for index, (name, value) in enumerate(result["per_class"].items()):
            lines.append(f"{name:<24}{roles.get(index, '-'):<8}{value:>7.1f}")
        lines.append(
            " ".join(f"{k}={result[k]:.1f}" for k in ("miou", "seen_miou", "unseen_miou", "hiou"))
        )
        return "\n".join(lines)
