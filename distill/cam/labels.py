"""Image-level labels for weakly-supervised segmentation: loading, validation, a PASCAL VOC converter.

File format (what ``distill.toy`` writes to ``labels/image_labels_{split}.json``)::

    {"categories": [{"id": 1, "name": "circle", "prompt": "optional text for the prompt"}, ...],
     "images": [{"id": 1, "file_name": "000001.png", "labels": [1, 5]}, ...]}

A category's ``id`` is its value in the label PNGs (background is 0, 255 is ignore), so ids must lie in
``1..254``. Every image needs at least one label and only ids of listed categories.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.utils import write_json_atomic

__all__ = [
    "LabeledImage",
    "ImageLabels",
    "load_image_labels",
    "check_image_labels",
    "voc_image_labels",
    "VOC_CLASSES",
    "VOC_PROMPT_NAMES",
    "VOC_BACKGROUND_PROMPTS",
    "COCO_BACKGROUND_PROMPTS",
]

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
# CLIP-ES's prompt names (clip_text.py ``new_class_names``): synonyms folded into the name.
VOC_PROMPT_NAMES = (
    "aeroplane",
    "bicycle",
    "bird avian",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair seat",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person with clothes,people,human",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor screen",
)
# CLIP-ES background classes (25 for VOC, 23 for COCO).
VOC_BACKGROUND_PROMPTS = (
    "ground",
    "land",
    "grass",
    "tree",
    "building",
    "wall",
    "sky",
    "lake",
    "water",
    "river",
    "sea",
    "railway",
    "railroad",
    "keyboard",
    "helmet",
    "cloud",
    "house",
    "mountain",
    "ocean",
    "road",
    "rock",
    "street",
    "valley",
    "bridge",
    "sign",
)
COCO_BACKGROUND_PROMPTS = tuple(p for p in VOC_BACKGROUND_PROMPTS if p not in ("keyboard", "sign"))


@dataclass(frozen=True)
class LabeledImage:
    """One image with its image-level labels (category ids, deduplicated, in file order)."""

    image_id: int | str
    file_name: str
    labels: tuple[int, ...]

    def describe(self) -> str:
        return f"image {self.image_id!r} ({self.file_name})"


@dataclass(frozen=True)
class ImageLabels:
    """A validated image-labels file."""

    source: str
    category_ids: tuple[int, ...]
    names: tuple[str, ...]
    prompts: tuple[str, ...]
    images: tuple[LabeledImage, ...]

    def index_of(self, category_id: int) -> int:
        """Position of ``category_id`` in ``category_ids``."""
        return self.category_ids.index(category_id)


def check_image_labels(
    labels: Iterable[Any], *, vocabulary: Sequence[int], where: str
) -> tuple[int, ...]:
    """Validate one image's labels against the vocabulary's category ids.

    Raises:
        ValueError: naming ``where`` (the image), for an empty list, non-integer entries or ids outside
            the vocabulary.
    """
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise ValueError(f"{where}: 'labels' must be a list of category ids, got {labels!r}")
    values = list(labels)
    if not values:
        raise ValueError(
            f"{where}: empty label list (CLIP-ES needs at least one image-level label per image)"
        )
    bad_type = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
    if bad_type:
        raise ValueError(f"{where}: labels must be integer category ids, got {bad_type}")
    known = set(vocabulary)
    unknown = sorted({v for v in values if v not in known})
    if unknown:
        raise ValueError(
            f"{where}: labels {unknown} are not in the vocabulary (category ids {sorted(vocabulary)})"
        )
    return tuple(dict.fromkeys(values))


def _categories(
    data: Mapping, source: str
) -> tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...]]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise ValueError(f"{source}: 'categories' must be a non-empty list")
    ids, names, prompts = [], [], []
    for i, cat in enumerate(cats):
        if (
            not isinstance(cat, Mapping)
            or not isinstance(cat.get("id"), int)
            or not isinstance(cat.get("name"), str)
        ):
            raise ValueError(
                f"{source}: categories[{i}] needs an integer 'id' and a string 'name', got {cat!r}"
            )
        if not 1 <= cat["id"] <= 254:
            raise ValueError(
                f"{source}: category {cat['name']!r} has id {cat['id']}; ids are label-PNG values and "
                f"must lie in 1..254 (0 is background, 255 ignore)"
            )
        ids.append(cat["id"])
        names.append(cat["name"])
        prompts.append(str(cat.get("prompt") or cat["name"]))
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"{source}: duplicate category ids {sorted(i for i in set(ids) if ids.count(i) > 1)}"
        )
    return tuple(ids), tuple(names), tuple(prompts)


def load_image_labels(path: str | os.PathLike) -> ImageLabels:
    """Read and validate an image-labels JSON file (format in the module docstring).

    Raises:
        FileNotFoundError: missing file.
        ValueError: malformed JSON or categories; an image without labels or with ids outside the
            vocabulary (naming the image); duplicate image ids or file names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image-labels file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected an object with 'categories' and 'images' lists")
    ids, names, prompts = _categories(data, str(path))
    images, seen_ids, seen_files = [], set(), set()
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, Mapping) or "file_name" not in entry or "labels" not in entry:
            raise ValueError(f"{path}: images[{i}] needs 'file_name' and 'labels', got {entry!r}")
        image_id = entry.get("id", Path(str(entry["file_name"])).stem)
        where = f"{path}: image {image_id!r} ({entry['file_name']})"
        labels = check_image_labels(entry["labels"], vocabulary=ids, where=where)
        if image_id in seen_ids or entry["file_name"] in seen_files:
            raise ValueError(f"{where}: duplicate image id or file name")
        seen_ids.add(image_id)
        seen_files.add(entry["file_name"])
        images.append(
            LabeledImage(image_id=image_id, file_name=str(entry["file_name"]), labels=labels)
        )
    if not images:
        raise ValueError(f"{path}: no images")
    return ImageLabels(
        source=str(path), category_ids=ids, names=names, prompts=prompts, images=tuple(images)
    )


def voc_image_labels(
    voc_root: str | os.PathLike,
    split_file: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    image_suffix: str = ".jpg",
) -> Path:
    """Write an image-labels file for PASCAL VOC from its XML annotations.

    Args:
        voc_root: ``VOCdevkit/VOC2012`` (with ``Annotations/``).
        split_file: one image id per line (e.g. ``ImageSets/Segmentation/train_aug.txt``; a second
            column, as in some SBD lists, is ignored).
        out_path: where to write the JSON (categories 1..20 in VOC order, with CLIP-ES prompt names).
    """
    root, split_file = Path(voc_root), Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"VOC split file not found: {split_file}")
    ids = [
        line.split()[0]
        for line in split_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    ids = [Path(i).stem for i in ids]
    images = []
    for image_id in ids:
        xml_path = root / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise FileNotFoundError(f"VOC annotation not found for image {image_id}: {xml_path}")
        try:
            names = [
                obj.findtext("name", "").strip()
                for obj in ET.parse(xml_path).getroot().iter("object")
            ]
        except ET.ParseError as err:
            raise ValueError(f"{xml_path}: not valid XML ({err})") from err
        unknown = sorted({n for n in names if n not in VOC_CLASSES})
        if unknown:
            raise ValueError(f"{xml_path}: unknown VOC classes {unknown}")
        labels = list(dict.fromkeys(VOC_CLASSES.index(n) + 1 for n in names))
        images.append({"id": image_id, "file_name": f"{image_id}{image_suffix}", "labels": labels})
    categories = [
        {"id": i + 1, "name": n, "prompt": p}
        for i, (n, p) in enumerate(zip(VOC_CLASSES, VOC_PROMPT_NAMES))
    ]
    out_path = Path(out_path)
    write_json_atomic(out_path, {"categories": categories, "images": images})
    return out_path
