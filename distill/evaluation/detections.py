"""Validation and copying of detection results in the COCO results format."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["check_detections"]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_detections(
    detections: Sequence[dict],
    *,
    image_ids: Iterable[int],
    iou_type: str = "bbox",
    keep_category_ids: Iterable[int] | None = None,
) -> list[dict]:
    """Validate COCO-format results and return shallow copies (the evaluators mutate their input).

    Each detection needs ``image_id`` (an image of the ground truth), ``category_id``, a finite
    ``score`` and, for ``bbox``, ``bbox = [x, y, w, h]`` with finite ``w, h >= 0``; for ``segm``,
    a ``segmentation`` RLE (its ``bbox``, if any, is dropped so areas come from the mask).
    Detections of categories outside ``keep_category_ids`` (when given) are left out.

    Raises:
        ValueError: naming the detection's index and the offending field.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"detections must be a list of dicts, got {type(detections).__name__}")
    known_images = set(image_ids)
    keep = None if keep_category_ids is None else set(keep_category_ids)
    out = []
    for index, det in enumerate(detections):
        where = f"detection [{index}]"
        if not isinstance(det, dict):
            raise ValueError(f"{where} is not a dict")
        for key in (
            "image_id",
            "category_id",
            "score",
            iou_type if iou_type == "bbox" else "segmentation",
        ):
            if key not in det:
                raise ValueError(f"{where} lacks field {key!r}")
        if det["image_id"] not in known_images:
            raise ValueError(
                f"{where}: field 'image_id' {det['image_id']!r} is not an image of the ground truth"
            )
        if not _finite(det["score"]):
            raise ValueError(
                f"{where} (image {det['image_id']}): field 'score' must be finite, got {det['score']!r}"
            )
        if iou_type == "bbox":
            bbox = det["bbox"]
            if (
                not isinstance(bbox, (list, tuple))
                or len(bbox) != 4
                or not all(_finite(v) for v in bbox)
            ):
                raise ValueError(
                    f"{where} (image {det['image_id']}): field 'bbox' must be 4 finite numbers, got {bbox!r}"
                )
            if bbox[2] < 0 or bbox[3] < 0:
                raise ValueError(
                    f"{where} (image {det['image_id']}): field 'bbox' has negative w/h {bbox!r}"
                )
        if keep is not None and det["category_id"] not in keep:
            continue
        copy = dict(det)
        if iou_type == "bbox":
            copy["bbox"] = [float(v) for v in det["bbox"]]
            copy.pop("segmentation", None)
        else:
            copy.pop("bbox", None)
        out.append(copy)
    return out
