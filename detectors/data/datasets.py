"""Open-vocabulary datasets in Detectron2's catalogs: OV-COCO, OV-LVIS and any COCO-format dataset
with a base/novel split.

Registration is lazy: nothing is read until ``DatasetCatalog.get(name)`` (or
:func:`get_ov_metadata`), so registering never fails on a machine without the files.

Metadata of a registered dataset (``MetadataCatalog.get(name)``):
    thing_classes, thing_synonyms (per class, names for the text classifier),
    class_roles ("base" / "novel" / "rare", per contiguous class), base_class_ids / novel_class_ids
    (dataset category ids), thing_dataset_id_to_contiguous_id, json_file, image_root,
    evaluator_type ("ov_coco" or "ov_lvis"), base_only (novel annotations dropped at load).

Data problems are handled as follows (each logged once per dataset with counts and example ids):
boxes partly outside the image are clipped to it; boxes with zero area (after clipping), non-finite
or malformed ones are dropped; images missing on disk raise ``FileNotFoundError`` when the training
loader is built (``DATALOADER.CHECK_IMAGES``); duplicate class names raise ``ValueError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from distill.data import image_path
from distill.vocab import NOVEL_ROLES, OV_COCO_BASE_IDS, OV_COCO_NOVEL_IDS, Vocabulary

__all__ = [
    "register_ov_dataset",
    "register_ov_coco",
    "register_ov_lvis",
    "register_toy_datasets",
    "get_ov_metadata",
    "load_ov_json",
    "check_image_files",
    "datasets_root",
    "TOY_DATASETS",
]

logger = logging.getLogger(__name__)

TOY_DATASETS = ("toy_train_base", "toy_val")
"""Dataset names resolved by ``tools/train_net.py`` through ``distill.toy.ensure_toy_world``."""


def datasets_root() -> Path:
    """Detectron2's dataset root: ``$DETECTRON2_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets")).expanduser()


def _vocabulary(
    categories_source: Any,
    *,
    novel_ids: Iterable[int] | None,
    base_ids: Iterable[int] | None,
    label: str,
) -> Vocabulary:
    try:
        return Vocabulary.from_coco_json(categories_source, novel_ids=novel_ids, base_ids=base_ids)
    except ValueError as err:
        raise ValueError(f"dataset {label}: {err}") from err


def _set_metadata(name: str, vocab: Vocabulary) -> None:
    meta = MetadataCatalog.get(name)
    if getattr(meta, "thing_classes", None) is not None:
        return
    meta.set(
        thing_classes=list(vocab.names),
        thing_synonyms=vocab.text_inputs(),
        class_roles=list(vocab.roles),
        thing_dataset_id_to_contiguous_id={cid: i for i, cid in enumerate(vocab.category_ids)},
        base_class_ids=vocab.ids_with_role("base"),
        novel_class_ids=vocab.ids_with_role(*NOVEL_ROLES),
    )


def get_ov_metadata(name: str):
    """``MetadataCatalog.get(name)`` with the class fields filled (reads the json's categories if needed)."""
    meta = MetadataCatalog.get(name)
    if getattr(meta, "thing_classes", None) is None:
        if not hasattr(meta, "json_file"):
            raise KeyError(
                f"dataset {name!r} is not registered as an open-vocabulary dataset "
                f"(use detectors.data.register_ov_dataset)"
            )
        with open(meta.json_file, encoding="utf-8") as handle:
            data = json.load(handle)
        _set_metadata(
            name,
            _vocabulary(
                {"categories": data.get("categories")},
                novel_ids=meta.get("novel_ids"),
                base_ids=meta.get("base_ids"),
                label=f"{name} ({meta.json_file})",
            ),
        )
    return meta


class _Issues:
    """Counts data problems per kind with a few example ids, logged once at the end of loading."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list] = {}

    def add(self, kind: str, example: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(example)

    def log(self, label: str) -> None:
        for kind, count in self.counts.items():
            logger.warning(
                "%s: %d %s (e.g. annotation ids %s)", label, count, kind, self.examples[kind]
            )


def _clean_box(bbox: Any, width: float, height: float) -> tuple[list[float] | None, str | None]:
    """Clip an xywh box to the image; return (box or None, issue kind or None)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None, "malformed boxes dropped"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, "malformed boxes dropped"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, "non-finite boxes dropped"
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    if x2 <= x1 or y2 <= y1:
        inside = w > 0 and h > 0
        return None, ("boxes outside the image dropped" if inside else "zero-area boxes dropped")
    issue = (
        None
        if (x1, y1, x2, y2) == (x, y, x + w, y + h)
        else "boxes partly outside the image clipped"
    )
    return [x1, y1, x2 - x1, y2 - y1], issue


def load_ov_json(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    *,
    dataset_name: str | None = None,
    novel_ids: Iterable[int] | None = None,
    base_ids: Iterable[int] | None = None,
    base_only: bool = False,
) -> list[dict]:
    """Read a COCO/LVIS-format json into Detectron2 dataset dicts.

    Categories outside the vocabulary (role ``excluded``) are ignored; with ``base_only`` the
    annotations of novel/rare classes are dropped too (they must never be trained on). Category ids
    become contiguous indices into the vocabulary (``thing_classes``). Boxes are cleaned as described
    in the module docstring. Returns dicts with ``file_name, height, width, image_id, annotations``;
    ``file_name`` is :func:`distill.data.image_path` of the image entry (COCO ``file_name`` or
    LVIS v1 ``coco_url``).

    Raises:
        FileNotFoundError: the json does not exist.
        ValueError: duplicate class names or image ids, images without width/height (naming the file).
    """
    json_file, image_root = Path(json_file), Path(image_root)
    label = f"dataset {dataset_name or json_file.name} ({json_file})"
    if not json_file.is_file():
        raise FileNotFoundError(f"{label}: annotation file does not exist")
    with open(json_file, encoding="utf-8") as handle:
        data = json.load(handle)
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{label}: missing or invalid top-level {key!r} list")
    vocab = _vocabulary(
        {"categories": data["categories"]}, novel_ids=novel_ids, base_ids=base_ids, label=label
    )
    if dataset_name is not None:
        _set_metadata(dataset_name, vocab)
    to_contiguous = vocab.id_to_index
    trainable = set(vocab.ids_with_role("base")) if base_only else set(vocab.category_ids)
    by_image: dict[Any, list] = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    issues = _Issues()
    dicts, seen = [], set()
    for info in data["images"]:
        image_id = info.get("id")
        if image_id in seen:
            raise ValueError(f"{label}: image id {image_id!r} appears twice")
        seen.add(image_id)
        if "width" not in info or "height" not in info:
            raise ValueError(f"{label}: image id {image_id!r} lacks 'width'/'height'")
        width, height = int(info["width"]), int(info["height"])
        objs = []
        for ann in by_image.get(image_id, []):
            category = ann.get("category_id")
            if category not in to_contiguous:
                continue
            if category not in trainable:
                issues.add("novel-class annotations dropped (base-only training)", ann.get("id"))
                continue
            box, issue = _clean_box(ann.get("bbox"), width, height)
            if issue is not None:
                issues.add(issue, ann.get("id"))
            if box is None:
                continue
            obj = {
                "bbox": box,
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": to_contiguous[category],
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
            if "segmentation" in ann:
                obj["segmentation"] = ann["segmentation"]
            objs.append(obj)
        try:
            file_name = str(image_path(info, image_root))
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from err
        record = {
            "file_name": file_name,
            "height": height,
            "width": width,
            "image_id": image_id,
            "annotations": objs,
        }
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if key in info:
                record[key] = info[key]
        dicts.append(record)
    issues.log(label)
    logger.info(
        "%s: %d images, %d annotations, %d classes (%d base)",
        label,
        len(dicts),
        sum(len(d["annotations"]) for d in dicts),
        len(vocab),
        len(vocab.ids_with_role("base")),
    )
    return dicts


def register_ov_dataset(
    name: str,
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    *,
    novel_ids: Sequence[int] | None = None,
    base_ids: Sequence[int] | None = None,
    base_only: bool = False,
    evaluator_type: str = "ov_coco",
    categories: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Register a COCO-format dataset with a base/novel split under ``name`` (lazily).

    Roles come from each category's ``"split"`` field ("base" / "novel"), else from
    ``novel_ids``/``base_ids`` (other categories excluded), else LVIS ``"frequency"`` (rare = novel);
    see ``distill.vocab.Vocabulary.from_coco_json``.

    Args:
        base_only: drop novel/rare annotations when loading (use for training splits).
        evaluator_type: ``"ov_coco"`` (AP50 novel/base/all) or ``"ov_lvis"`` (AP, APr/APc/APf).
        categories: the category list, when known without reading the json (metadata is then set now).
    """
    if evaluator_type not in ("ov_coco", "ov_lvis"):
        raise ValueError(f"evaluator_type must be 'ov_coco' or 'ov_lvis', got {evaluator_type!r}")
    json_file, image_root = str(json_file), str(image_root)
    novel = None if novel_ids is None else [int(i) for i in novel_ids]
    base = None if base_ids is None else [int(i) for i in base_ids]

    def load() -> list[dict]:
        return load_ov_json(
            json_file,
            image_root,
            dataset_name=name,
            novel_ids=novel,
            base_ids=base,
            base_only=base_only,
        )

    DatasetCatalog.register(name, load)
    meta = MetadataCatalog.get(name)
    meta.set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type=evaluator_type,
        base_only=base_only,
    )
    if novel is not None:
        meta.set(novel_ids=novel)
    if base is not None:
        meta.set(base_ids=base)
    if categories is not None:
        _set_metadata(
            name,
            _vocabulary(
                {"categories": list(categories)},
                novel_ids=novel,
                base_ids=base,
                label=f"{name} ({json_file})",
            ),
        )


def register_ov_coco(root: str | os.PathLike | None = None) -> None:
    """OV-COCO (OVR-CNN split): ``ov_coco_train_base`` (48 base classes' annotations of train2017) and
    ``ov_coco_val`` (val2017, the 65 classes), from ``<root>/coco/{annotations,train2017,val2017}``."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    root = Path(root) if root is not None else datasets_root()
    keep = set(OV_COCO_BASE_IDS) | set(OV_COCO_NOVEL_IDS)
    categories = [
        {"id": c["id"], "name": c["name"]}
        for c in COCO_CATEGORIES
        if c.get("isthing") and c["id"] in keep
    ]
    for name, split, base_only in (
        ("ov_coco_train_base", "train2017", True),
        ("ov_coco_val", "val2017", False),
    ):
        if name in DatasetCatalog.list():
            continue
        register_ov_dataset(
            name,
            root / "coco" / "annotations" / f"instances_{split}.json",
            root / "coco" / split,
            novel_ids=OV_COCO_NOVEL_IDS,
            base_ids=OV_COCO_BASE_IDS,
            base_only=base_only,
            evaluator_type="ov_coco",
            categories=categories,
        )


def register_ov_lvis(root: str | os.PathLike | None = None) -> None:
    """OV-LVIS: ``ov_lvis_train_base`` (lvis_v1_train without rare annotations; 866 trained classes) and
    ``ov_lvis_val`` (lvis_v1_val, 1203 classes), from ``<root>/lvis/*.json`` and ``<root>/coco/*2017``."""
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    root = Path(root) if root is not None else datasets_root()
    categories = [
        {k: c[k] for k in ("id", "name", "synonyms", "frequency")} for c in LVIS_CATEGORIES
    ]
    for name, split, base_only in (
        ("ov_lvis_train_base", "train", True),
        ("ov_lvis_val", "val", False),
    ):
        if name in DatasetCatalog.list():
            continue
        register_ov_dataset(
            name,
            root / "lvis" / f"lvis_v1_{split}.json",
            root / "coco",
            base_only=base_only,
            evaluator_type="ov_lvis",
            categories=categories,
        )


def register_toy_datasets(world: Any) -> None:
    """``toy_train_base`` / ``toy_val`` from a ``distill.toy.ToyWorld`` (re-registered if the world moved)."""
    for name, split, base_only in (("toy_train_base", "train", True), ("toy_val", "val", False)):
        json_file = str(world.instances_json(split))
        if name in DatasetCatalog.list():
            if MetadataCatalog.get(name).get("json_file") == json_file:
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_ov_dataset(
            name,
            json_file,
            world.image_dir(split),
            base_only=base_only,
            evaluator_type="ov_coco",
            categories=world.categories,
        )


def check_image_files(dataset_dicts: Sequence[Mapping[str, Any]], *, dataset: str) -> None:
    """Raise ``FileNotFoundError`` listing the images of ``dataset`` missing on disk (count + first 5)."""
    missing = [
        (d.get("image_id"), d["file_name"])
        for d in dataset_dicts
        if not os.path.isfile(d["file_name"])
    ]
    if missing:
        shown = ", ".join(f"id {i!r}: {f}" for i, f in missing[:5])
        raise FileNotFoundError(
            f"dataset {dataset}: {len(missing)} of {len(dataset_dicts)} image files do not exist "
            f"({shown}{', ...' if len(missing) > 5 else ''})"
        )
