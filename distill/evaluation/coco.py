"""OV-COCO evaluation: per-class AP50 averaged within novel / base / all classes."""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..vocab.coco_json import load_coco_json
from .detections import check_detections

__all__ = ["load_coco_gt", "evaluate_ov_coco", "format_ov_table"]


def load_coco_gt(gt: COCO | str | os.PathLike | Mapping[str, Any]) -> COCO:
    """A pycocotools ``COCO`` from a path or dict (validated by ``load_coco_json``), or ``gt`` itself.

    Missing ``iscrowd`` defaults to 0 and missing ``area`` to ``w * h`` (COCOeval needs both).
    """
    if isinstance(gt, COCO):
        return gt
    data = load_coco_json(gt)
    data["annotations"] = [
        {"iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a} for a in data["annotations"]
    ]
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _nanmean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def evaluate_ov_coco(
    gt: COCO | str | os.PathLike | Mapping[str, Any],
    detections: Sequence[dict],
    *,
    novel_ids: Iterable[int],
    base_ids: Iterable[int],
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """OV-COCO AP50 (OVR-CNN / ViLD / BARON protocol), in percent.

    Per class ``k``: AP50 = mean over the 101 recall thresholds of pycocotools'
    ``precision[iou=0.5, :, k, area=all, maxDets=100]`` (``-1`` entries ignored). A class with
    ground truth but no detection scores 0; a class without (non-crowd) ground truth is excluded
    and listed under ``no_gt_ids``. ``novel_ap50`` / ``base_ap50`` / ``all_ap50`` average the
    per-class values within novel, base and novel ∪ base; detections of any other class are
    ignored. A group with no evaluable class gives NaN.

    Args:
        gt: ground truth (pycocotools ``COCO``, path or dict).
        detections: COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``; ``segmentation``
            RLE for ``iou_type="segm"``); may be empty.
        novel_ids / base_ids: disjoint category-id sets, e.g. ``OV_COCO_NOVEL_IDS`` / ``OV_COCO_BASE_IDS``.

    Returns:
        ``novel_ap50, base_ap50, all_ap50`` (float), ``per_class`` ({category id: AP50}),
        ``num_classes`` ({"novel": n, "base": n} evaluated), ``no_gt_ids`` (excluded ids),
        ``names`` ({category id: name}).
    """
    novel, base = {int(i) for i in novel_ids}, {int(i) for i in base_ids}
    if novel & base:
        raise ValueError(f"novel_ids and base_ids overlap: {sorted(novel & base)}")
    coco_gt = load_coco_gt(gt)
    gt_cats = set(coco_gt.getCatIds())
    cat_ids = sorted((novel | base) & gt_cats)
    dets = check_detections(
        detections, image_ids=coco_gt.getImgIds(), iou_type=iou_type, keep_category_ids=cat_ids
    )
    with_gt = {a["category_id"] for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0)}

    per_class: dict[int, float] = {}
    if not dets or not cat_ids:
        per_class = {c: 0.0 for c in cat_ids if c in with_gt}
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dets)
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.catIds = cat_ids
            evaluator.evaluate()
            evaluator.accumulate()
        params = evaluator.params
        t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
        a = params.areaRngLbl.index("all")
        m = list(params.maxDets).index(100)
        precision = evaluator.eval["precision"]
        for k, cat in enumerate(params.catIds):
            curve = precision[t, :, k, a, m]
            curve = curve[curve > -1]
            if curve.size:
                per_class[int(cat)] = float(curve.mean() * 100.0)

    no_gt = sorted((novel | base) - set(per_class))
    return {
        "novel_ap50": _nanmean(v for c, v in per_class.items() if c in novel),
        "base_ap50": _nanmean(v for c, v in per_class.items() if c in base),
        "all_ap50": _nanmean(per_class.values()),
        "per_class": dict(sorted(per_class.items())),
        "num_classes": {
            "novel": sum(c in novel for c in per_class),
            "base": sum(c in base for c in per_class),
        },
        "no_gt_ids": no_gt,
        "names": {c: coco_gt.cats[c]["name"] for c in sorted(per_class)},
        "roles": {c: ("novel" if c in novel else "base") for c in sorted(per_class)},
    }


def format_ov_table(metrics: Mapping[str, Any], *, per_class: bool = False) -> str:
    """Plain-text table of an :func:`evaluate_ov_coco` result (optionally with per-class rows)."""
    counts = metrics.get("num_classes", {})
    n_all = (
        counts.get("novel", 0) + counts.get("base", 0)
        if counts
        else len(metrics.get("per_class", {}))
    )
    rows = [
        ("novel", counts.get("novel", "?"), metrics["novel_ap50"]),
        ("base", counts.get("base", "?"), metrics["base_ap50"]),
        ("all", n_all, metrics["all_ap50"]),
    ]
    lines = [f"{'split':<8}{'classes':>8}{'AP50':>8}"]
    lines += [f"{name:<8}{str(n):>8}{value:>8.1f}" for name, n, value in rows]
    if metrics.get("no_gt_ids"):
        lines.append(f"excluded (no ground truth): {metrics['no_gt_ids']}")
    if per_class:
        names, roles = metrics.get("names", {}), metrics.get("roles", {})
        lines.append(f"{'id':>4}  {'class':<20}{'role':<7}{'AP50':>7}")
        for cat, value in metrics["per_class"].items():
            lines.append(
                f"{cat:>4}  {str(names.get(cat, '')):<20}{roles.get(cat, ''):<7}{value:>7.1f}"
            )
    return "\n".join(lines)
