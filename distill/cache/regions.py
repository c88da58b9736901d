"""Which regions of an image get teacher embeddings: ground-truth boxes or top-M proposals
(:func:`image_regions`, used by the precompute and by online targets).

Proposal files use Detectron2's format: a pickle (or JSON) dict with ``"ids"`` (image ids),
``"boxes"`` (per image ``[K_i, 4]``) and ``"objectness_logits"`` (per image ``[K_i]``), optionally
``"bbox_mode"`` (0 = XYXY_ABS, the default; 1 = XYWH_ABS). Ids are matched as strings, as Detectron2 does.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.data import ImageRecord

__all__ = [
    "Proposals",
    "load_proposals",
    "clip_and_filter",
    "select_proposals",
    "gt_boxes",
    "image_regions",
]

_XYXY_ABS, _XYWH_ABS = 0, 1


@dataclass
class Proposals:
    """Per-image proposal boxes ``[K, 4]`` float32 xyxy and objectness logits ``[K]``, keyed by ``str(image_id)``."""

    path: Path
    boxes: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]

    def get(self, image_id: Hashable) -> tuple[np.ndarray, np.ndarray]:
        key = str(image_id)
        if key not in self.boxes:
            raise ValueError(f"proposal file {self.path} has no entry for image id {image_id!r}")
        return self.boxes[key], self.scores[key]


def load_proposals(path: str | os.PathLike) -> Proposals:
    """Read a Detectron2-format proposal file (``.pkl`` or ``.json``); boxes converted to xyxy."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"proposal file {path} does not exist")
    if path.suffix == ".json":
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    else:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    if not isinstance(data, Mapping):
        raise ValueError(f"proposal file {path}: expected a dict, got {type(data).__name__}")
    for field in ("ids", "boxes", "objectness_logits"):
        if field not in data:
            raise ValueError(f"proposal file {path} lacks field {field!r}")
    mode = int(data.get("bbox_mode", _XYXY_ABS))
    if mode not in (_XYXY_ABS, _XYWH_ABS):
        raise ValueError(
            f"proposal file {path}: bbox_mode {mode} unsupported (use 0 XYXY_ABS or 1 XYWH_ABS)"
        )
    ids, all_boxes, all_scores = data["ids"], data["boxes"], data["objectness_logits"]
    if not len(ids) == len(all_boxes) == len(all_scores):
        raise ValueError(
            f"proposal file {path}: {len(ids)} ids, {len(all_boxes)} box arrays and "
            f"{len(all_scores)} objectness arrays"
        )
    boxes: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    for image_id, image_boxes, image_scores in zip(ids, all_boxes, all_scores):
        key = str(image_id)
        if key in boxes:
            raise ValueError(f"proposal file {path}: image id {image_id!r} appears twice")
        b = np.asarray(image_boxes, dtype=np.float32).reshape(-1, 4).copy()
        s = np.asarray(image_scores, dtype=np.float32).reshape(-1)
        if len(b) != len(s):
            raise ValueError(
                f"proposal file {path}: image id {image_id!r} has {len(b)} boxes but "
                f"{len(s)} objectness logits"
            )
        if mode == _XYWH_ABS:
            b[:, 2:] += b[:, :2]
        boxes[key], scores[key] = b, s
    return Proposals(path, boxes, scores)


def clip_and_filter(boxes: np.ndarray, *, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip xyxy ``boxes [K, 4]`` to the image and return ``(clipped [K, 4], keep [K] bool)``.

    A box is kept if it is finite and has positive width and height after clipping.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = np.stack(
        [
            boxes[:, 0].clip(0, width),
            boxes[:, 1].clip(0, height),
            boxes[:, 2].clip(0, width),
            boxes[:, 3].clip(0, height),
        ],
        axis=1,
    )
    keep = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def select_proposals(
    boxes: np.ndarray, scores: np.ndarray, *, width: int, height: int, max_per_image: int
) -> tuple[np.ndarray, int]:
    """Clip, drop degenerate boxes, then keep the top ``max_per_image`` by objectness.

    Returns ``(boxes [M, 4] float32 sorted by decreasing objectness (stable), num_degenerate)``.
    """
    clipped, keep = clip_and_filter(boxes, width=width, height=height)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)[keep]
    order = np.argsort(-scores, kind="stable")[:max_per_image]
    return clipped[keep][order], int((~keep).sum())


def gt_boxes(
    annotations: Sequence[Mapping],
    *,
    image_id: Hashable,
    width: int,
    height: int,
    max_per_image: int,
) -> tuple[np.ndarray, int]:
    """Ground-truth boxes of one image: COCO ``bbox`` (xywh) to xyxy, crowd boxes skipped.

    Annotations are taken in increasing annotation-id order; returns ``(boxes [<=M, 4], num_degenerate)``.
    """
    rows = []
    for ann in sorted(annotations, key=lambda a: a.get("id", 0)):
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4:
            raise ValueError(
                f"annotation {ann.get('id')!r} of image id {image_id!r} has no valid 'bbox' "
                f"(got {bbox!r})"
            )
        x, y, w, h = (float(v) for v in bbox)
        rows.append((x, y, x + w, y + h))
    clipped, keep = clip_and_filter(np.asarray(rows, dtype=np.float32), width=width, height=height)
    return clipped[keep][:max_per_image], int((~keep).sum())


def image_regions(
    record: ImageRecord, *, proposals: Proposals | None, max_per_image: int, width: int, height: int
) -> tuple[np.ndarray, int]:
    """The regions of one dataset image: the top ``max_per_image`` proposals of ``proposals`` when
    given, else its ground-truth boxes; clipped to ``width x height``, degenerate ones dropped.

    Returns ``(boxes [M, 4] float32 xyxy, num_degenerate)``.
    """
    if proposals is not None:
        boxes, scores = proposals.get(record.image_id)
        return select_proposals(
            boxes, scores, width=width, height=height, max_per_image=max_per_image
        )
    return gt_boxes(
        record.annotations,
        image_id=record.image_id,
        width=width,
        height=height,
        max_per_image=max_per_image,
    )
