"""Detectron2 ``DatasetEvaluator`` over ``distill.evaluation``'s OV-COCO / OV-LVIS protocols."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

from distill.evaluation import evaluate_ov_coco, evaluate_ov_lvis, format_ov_table
from distill.utils import write_json_atomic

from .data import get_ov_metadata

__all__ = ["OVDetectionEvaluator", "METRICS_FILE", "format_lvis_table", "read_metrics"]

logger = logging.getLogger(__name__)

METRICS_FILE = "ov_metrics.json"
_COCO_KEYS = ("novel_ap50", "base_ap50", "all_ap50")
_LVIS_KEYS = ("ap", "ap50", "ap75", "apr", "apc", "apf")


def format_lvis_table(metrics: dict[str, float]) -> str:
    """One-row text table of OV-LVIS metrics."""
    keys = [k for k in _LVIS_KEYS if k in metrics]
    return (
        "  ".join(f"{k.upper():>6}" for k in keys)
        + "\n"
        + "  ".join(f"{metrics[k]:>6.1f}" for k in keys)
    )


class OVDetectionEvaluator(DatasetEvaluator):
    """Open-vocabulary detection metrics of a registered dataset (``detectors.data``).

    ``evaluator_type`` "ov_coco": AP50 over novel / base / all classes (``novel_ap50``, ``base_ap50``,
    ``all_ap50``, plus ``per_class``); "ov_lvis": ``ap, ap50, ap75, apr, apc, apf`` (LVIS federated).
    Predictions' ``pred_classes`` must index the dataset's ``thing_classes`` (the trainer sets the
    model's vocabulary to them) followed by ``extra_class_names`` (``MODEL.VILD.CLASSES.
    TEST_EXTRA_NAMES``): detections of an extra class (index ``C + e``) are dropped, as COCO
    evaluation on the dataset's categories ignores categories without ground truth
    (wusize/ovdet@d74a20c scores the 80 COCO classes and evaluates OV-COCO's 65 with mmdet's
    ``CocoMetric``); ``num_dropped`` counts them. The table is logged and the metrics are written to
    ``output_dir/ov_metrics.json`` (``{"dataset": name, "iou_type": ..., <metrics>}``; with several
    IoU types, the keys of ``segm`` get a ``mask_`` prefix).
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        output_dir: str | os.PathLike | None = None,
        iou_types: Sequence[str] = ("bbox",),
        max_dets_per_image: int = 300,
        metrics_file: str = METRICS_FILE,
        distributed: bool = True,
        extra_class_names: Sequence[str] = (),
    ) -> None:
        self.dataset_name = dataset_name
        self.meta = get_ov_metadata(dataset_name)
        if self.meta.get("evaluator_type") not in ("ov_coco", "ov_lvis"):
            raise ValueError(
                f"dataset {dataset_name!r} has evaluator_type {self.meta.get('evaluator_type')!r}"
            )
        self.output_dir = Path(output_dir) if output_dir else None
        self.iou_types = tuple(iou_types)
        self.max_dets = int(max_dets_per_image)
        self.metrics_file = metrics_file
        self.distributed = distributed
        self._to_dataset_id = {v: k for k, v in self.meta.thing_dataset_id_to_contiguous_id.items()}
        self.extra_class_names = tuple(str(n) for n in extra_class_names)
        num_classes = len(self.meta.thing_classes)
        self._extra_indices = range(num_classes, num_classes + len(self.extra_class_names))
        self._predictions: list[dict] = []
        self.num_dropped = 0

    def reset(self) -> None:
        self._predictions = []
        self.num_dropped = 0

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            results = instances_to_coco_json(instances, inp["image_id"])
            kept = []
            for det in results:
                contiguous = det["category_id"]
                if contiguous in self._extra_indices:
                    self.num_dropped += 1
                    continue
                if contiguous not in self._to_dataset_id:
                    raise ValueError(
                        f"prediction class index {contiguous} is outside dataset "
                        f"{self.dataset_name!r}'s {len(self._to_dataset_id)} classes and its "
                        f"{len(self.extra_class_names)} extra test classes: set the model's "
                        f"vocabulary to the dataset's classes before evaluating"
                    )
                det["category_id"] = self._to_dataset_id[contiguous]
                kept.append(det)
            self._predictions.extend(kept)

    def evaluate(self) -> OrderedDict:
        predictions = self._predictions
        if self.extra_class_names:
            logger.info(
                "dropped %d detections of the %d extra test classes %s",
                self.num_dropped,
                len(self.extra_class_names),
                list(self.extra_class_names),
            )
        if self.distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return OrderedDict()
        metrics: dict[str, Any] = {"dataset": self.dataset_name}
        results: OrderedDict = OrderedDict()
        for iou_type in self.iou_types:
            values = self._evaluate(predictions, iou_type)
            prefix = "" if iou_type == self.iou_types[0] else "mask_"
            metrics.update({f"{prefix}{k}": v for k, v in values.items()})
            results[iou_type] = {k: v for k, v in values.items() if isinstance(v, float)}
        metrics["iou_type"] = self.iou_types[0]
        if self.output_dir is not None:
            write_json_atomic(self.output_dir / self.metrics_file, _json_safe(metrics), indent=1)
            logger.info("wrote %s", self.output_dir / self.metrics_file)
        return results

    def _evaluate(self, predictions: list[dict], iou_type: str) -> dict[str, Any]:
        gt = self.meta.json_file
        if self.meta.evaluator_type == "ov_coco":
            out = evaluate_ov_coco(
                gt,
                predictions,
                novel_ids=self.meta.novel_class_ids,
                base_ids=self.meta.base_class_ids,
                iou_type=iou_type,
            )
            table = format_ov_table(out)
            values = {k: float(out[k]) for k in _COCO_KEYS}
            values["per_class"] = {str(k): float(v) for k, v in out.get("per_class", {}).items()}
        else:
            out = evaluate_ov_lvis(gt, predictions, iou_type=iou_type, max_dets=self.max_dets)
            table = format_lvis_table(out)
            values = {k: float(v) for k, v in out.items()}
        logger.info(
            "open-vocabulary %s results on %s (%d detections):\n%s",
            iou_type,
            self.dataset_name,
            len(predictions),
            table,
        )
        return values


def _json_safe(obj: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return obj


def read_metrics(
    output_dir: str | os.PathLike, *, metrics_file: str = METRICS_FILE
) -> dict[str, Any]:
    """The metrics an :class:`OVDetectionEvaluator` wrote to ``output_dir``."""
    return json.loads((Path(output_dir) / metrics_file).read_text(encoding="utf-8"))
