"""Loading and validating COCO-format (and LVIS-format) annotation json."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["load_coco_json", "read_json_source"]


def read_json_source(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict, str]:
    """Return ``(dataset dict, label for error messages)`` from a path or an in-memory dict."""
    if isinstance(source, Mapping):
        return dict(source), "<in-memory dataset>"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    return data, str(path)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_ids(items: list, kind: str, label: str, required: tuple[str, ...]) -> set:
    ids: set = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{label}: {kind}s[{index}] is not an object")
        for key in required:
            if key not in item:
                raise ValueError(
                    f"{label}: {kind}s[{index}] (id {item.get('id', '?')}) lacks field {key!r}"
                )
        if item["id"] in ids:
            raise ValueError(f"{label}: duplicate {kind} id {item['id']}")
        ids.add(item["id"])
    return ids


def load_coco_json(
    source: str | os.PathLike | Mapping[str, Any], *, require_annotations: bool = True
) -> dict:
    """Load a COCO/LVIS-format dataset and validate it.

    Checks: top-level ``images``/``categories`` (and ``annotations`` unless
    ``require_annotations=False``) lists; unique ids; every annotation has ``id``, ``image_id``,
    ``category_id`` and ``bbox``; it references a known image and category; its bbox is 4 finite
    numbers with ``w > 0`` and ``h > 0``; ``area``/``score`` (when present) are finite.

    Returns:
        The dataset dict (a shallow copy when given a dict; a missing ``annotations`` key is
        filled with ``[]`` when not required).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, the annotation id and the offending field.
    """
    data, label = read_json_source(source)
    required = (
        ("images", "categories", "annotations") if require_annotations else ("images", "categories")
    )
    for key in required:
        if key not in data:
            raise ValueError(f"{label}: missing top-level key {key!r}")
    data.setdefault("annotations", [])
    for key in ("images", "categories", "annotations"):
        if not isinstance(data[key], list):
            raise ValueError(f"{label}: {key!r} must be a list, got {type(data[key]).__name__}")
    image_ids = _check_ids(data["images"], "image", label, ("id",))
    category_ids = _check_ids(data["categories"], "category", label, ("id", "name"))
    _check_ids(data["annotations"], "annotation", label, ("id", "image_id", "category_id", "bbox"))
    for ann in data["annotations"]:
        where = f"{label}: annotation id {ann['id']}"
        if ann["image_id"] not in image_ids:
            raise ValueError(
                f"{where}: field 'image_id' references unknown image {ann['image_id']}"
            )
        if ann["category_id"] not in category_ids:
            raise ValueError(
                f"{where}: field 'category_id' references unknown category {ann['category_id']}"
            )
        bbox = ann["bbox"]
        if (
            not isinstance(bbox, (list, tuple))
            or len(bbox) != 4
            or not all(_finite_number(v) for v in bbox)
        ):
            raise ValueError(
                f"{where}: field 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
            )
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(
                f"{where}: field 'bbox' is degenerate (w={bbox[2]}, h={bbox[3]}; both must be > 0)"
            )
        for key in ("area", "score"):
            if key in ann and not _finite_number(ann[key]):
                raise ValueError(
                    f"{where}: field {key!r} must be a finite number, got {ann[key]!r}"
                )
    return data
