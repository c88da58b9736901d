"""``OVSegMetric``: mIoU over seen and unseen classes and their harmonic mean, for mmengine evaluators."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmseg.registry import METRICS

from distill.evaluation.segmentation import SegmentationMetric

__all__ = ["OVSegMetric"]


@METRICS.register_module()
class OVSegMetric(BaseMetric):
    """Zero-shot segmentation metric on ``distill.evaluation.SegmentationMetric``.

    Class names come from the dataset's ``classes`` meta. Results (percent): ``mIoU`` (all classes),
    ``mIoU_seen``, ``mIoU_unseen``, ``hIoU`` (harmonic mean of the two) and ``aAcc``; the per-class
    table is printed to the log.

    Args:
        unseen_classes: unseen class names; default: the dataset meta's ``unseen_classes``.
        seen_classes: seen class names; default: every class that is not unseen (background included,
            the ZS3 / MaskCLIP+ convention). Classes in neither list count only in ``mIoU``.
        ignore_index: ground-truth label to skip.
    """

    default_prefix = None

    def __init__(
        self,
        *,
        unseen_classes: Sequence[str] | None = None,
        seen_classes: Sequence[str] | None = None,
        ignore_index: int = 255,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.unseen_classes = list(unseen_classes) if unseen_classes is not None else None
        self.seen_classes = list(seen_classes) if seen_classes is not None else None
        self.ignore_index = ignore_index
        self._scratch: SegmentationMetric | None = None

    def _new_metric(self) -> SegmentationMetric:
        meta = self.dataset_meta or {}
        classes = list(meta.get("classes") or [])
        if not classes:
            raise ValueError(
                "OVSegMetric needs the dataset's 'classes' meta (set by the runner from the dataset)"
            )
        unseen = (
            self.unseen_classes
            if self.unseen_classes is not None
            else list(meta.get("unseen_classes") or [])
        )
        seen = (
            self.seen_classes
            if self.seen_classes is not None
            else [c for c in classes if c not in unseen]
        )
        unknown = [c for c in list(unseen) + list(seen) if c not in classes]
        if unknown:
            raise ValueError(
                f"OVSegMetric: classes {unknown} are not in the dataset's classes {classes}"
            )
        return SegmentationMetric(
            len(classes),
            seen=[classes.index(c) for c in seen],
            unseen=[classes.index(c) for c in unseen],
            ignore_index=self.ignore_index,
            class_names=classes,
        )

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Store one confusion matrix per image (``[C, C]`` int64)."""
        if self._scratch is None:
            self._scratch = self._new_metric()
        metric = self._scratch
        for sample in data_samples:
            pred = sample["pred_sem_seg"]["data"].squeeze(0)
            gt = sample["gt_sem_seg"]["data"].squeeze(0).to(pred)
            metric.reset()
            try:
                metric.update(pred, gt)
            except ValueError as err:
                raise ValueError(f"{sample.get('seg_map_path', '<unknown file>')}: {err}") from err
            self.results.append(metric.confusion.copy())

    def compute_metrics(self, results: list[np.ndarray]) -> dict[str, float]:
        metric = self._new_metric()
        self._scratch = None
        for confusion in results:
            metric.confusion += confusion
        summary = metric.compute()
        print_log("\n" + metric.format_table(), logger="current")
        out = {
            "mIoU": summary["miou"],
            "mIoU_seen": summary["seen_miou"],
            "mIoU_unseen": summary["unseen_miou"],
            "hIoU": summary["hiou"],
            "aAcc": summary["pixel_acc"],
        }
        return {
            k: (round(float(v), 2) if not math.isnan(v) else float("nan")) for k, v in out.items()
        }
