"""The images of a COCO/LVIS-format json with their annotations, in increasing image-id order."""

from __future__ import annotations

import json
import os
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from distill.data.images import image_path

__all__ = ["ImageRecord", "read_image_records"]


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset json: id, file on disk, declared size (None where the json has none)
    and its annotations (``id``, ``bbox`` xywh and ``iscrowd`` only: LVIS jsons are large)."""

    image_id: Hashable
    file: Path
    width: int | None
    height: int | None
    annotations: list[dict]


def _image_sort_key(image_id: Hashable) -> tuple:
    return (0, image_id, "") if isinstance(image_id, int) else (1, 0, str(image_id))


def read_image_records(
    dataset_json: str | os.PathLike, image_root: str | os.PathLike
) -> list[ImageRecord]:
    """Every image of ``dataset_json`` (files resolved by :func:`~distill.data.images.image_path`)
    with its annotations, sorted by image id (integers first). Annotations are matched to images
    by ``str(image_id)``, as Detectron2 matches proposal ids.

    Raises:
        FileNotFoundError: the json does not exist.
        ValueError: no ``images`` list, an image id twice, or an image without a locatable file
            (naming the json and the image id).
    """
    dataset_json = Path(dataset_json)
    if not dataset_json.is_file():
        raise FileNotFoundError(f"dataset json {dataset_json} does not exist")
    with open(dataset_json, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"dataset json {dataset_json} has no 'images' list")
    by_image: dict[str, list] = {}
    for ann in data.get("annotations", []):
        compact = {"id": ann.get("id"), "bbox": ann.get("bbox"), "iscrowd": ann.get("iscrowd", 0)}
        by_image.setdefault(str(ann["image_id"]), []).append(compact)
    records, seen = [], set()
    for info in data["images"]:
        image_id = info["id"]
        if str(image_id) in seen:
            raise ValueError(f"dataset json {dataset_json}: image id {image_id!r} appears twice")
        seen.add(str(image_id))
        try:
            file = image_path(info, image_root)
        except ValueError as err:
            raise ValueError(f"dataset json {dataset_json}: {err}") from err
        width, height = info.get("width"), info.get("height")
        records.append(
            ImageRecord(
                image_id,
                file,
                None if width is None else int(width),
                None if height is None else int(height),
                by_image.get(str(image_id), []),
            )
        )
    records.sort(key=lambda r: _image_sort_key(r.image_id))
    return records
