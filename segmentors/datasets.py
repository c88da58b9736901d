"""``ToySegDataset``: the embedded toy world's semantic-segmentation split as an MMSeg dataset.

Layout (written by ``distill.toy``)::

    <root>/images/{split}/NNNNNN.png     RGB images
    <root>/seg/{split}/NNNNNN.png        labels: 0 background, 1..12 categories, 255 ignore
    <root>/seg/classes.json              {"classes": [...], "palette": [[r, g, b], ...], "unseen": [...],
                                          "ignore_index": 255}

Real datasets (VOC, Pascal Context, COCO-Stuff) use MMSeg's own dataset classes (see ``configs/seg``),
plus ``PascalVOCDataset20``: VOC without its background class, MaskCLIP's "VOC w/o background" protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmseg.datasets import BaseSegDataset, PascalVOCDataset
from mmseg.registry import DATASETS

from distill.vocab import validate_class_names

__all__ = ["ToySegDataset", "PascalVOCDataset20", "read_seg_classes", "PLACEHOLDER_PREFIX"]

PLACEHOLDER_PREFIX = "<toy_"


def read_seg_classes(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``classes.json`` (classes, palette, unseen, ignore_index)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"segmentation classes file not found: {path}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    classes = info.get("classes") if isinstance(info, dict) else None
    if not isinstance(classes, list):
        raise ValueError(f"{path}: 'classes' must be a non-empty list of names")
    validate_class_names(classes, field=f"{path}: 'classes'")
    unseen = info.get("unseen", [])
    unknown = [c for c in unseen if c not in classes]
    if unknown:
        raise ValueError(f"{path}: unseen classes {unknown} are not in 'classes'")
    palette = info.get("palette")
    if palette is not None and (len(palette) != len(classes) or any(len(p) != 3 for p in palette)):
        raise ValueError(f"{path}: 'palette' must hold one [r, g, b] per class ({len(classes)})")
    return {
        "classes": classes,
        "unseen": list(unseen),
        "palette": palette,
        "ignore_index": int(info.get("ignore_index", 255)),
    }


@DATASETS.register_module()
class ToySegDataset(BaseSegDataset):
    """The toy world's ``images/{split}`` + ``seg/{split}`` PNG pairs; classes, palette and the unseen
    list (``metainfo['unseen_classes']``, read by ``OVSegMetric``) from ``seg/classes.json``.

    Args:
        data_root: the toy world root (toy configs leave ``'<toy_world>'``, filled in by the tools).
        split: "train" or "val".
        classes_file: path of ``classes.json`` relative to ``data_root``.
        metainfo: optional; its ``classes`` must equal the file's (a guard against a stale config).
        **kwargs: ``BaseSegDataset`` arguments (pipeline, test_mode, indices, ...).

    Raises:
        FileNotFoundError: missing root, classes file, image or label file (named).
        ValueError: unfilled placeholder root, malformed classes file, classes that differ from the config.
    """

    METAINFO: dict = dict()

    def __init__(
        self,
        *,
        data_root: str,
        split: str = "train",
        classes_file: str = "seg/classes.json",
        metainfo: dict | None = None,
        **kwargs,
    ) -> None:
        if str(data_root).startswith(PLACEHOLDER_PREFIX):
            raise ValueError(
                f"ToySegDataset data_root is the placeholder {data_root!r}: run the config through "
                f"tools/train_seg.py / tools/test_seg.py (toy_world=True fills it) or set data_root"
            )
        if split not in ("train", "val"):
            raise ValueError(f"ToySegDataset split must be 'train' or 'val', got {split!r}")
        classes_path = Path(data_root) / classes_file
        info = read_seg_classes(classes_path)
        meta = {"classes": tuple(info["classes"]), "unseen_classes": tuple(info["unseen"])}
        if info["palette"] is not None:
            meta["palette"] = [list(p) for p in info["palette"]]
        extra = dict(metainfo or {})
        if "classes" in extra and list(extra.pop("classes")) != info["classes"]:
            raise ValueError(
                f"{classes_path}: classes {info['classes']} differ from the config's "
                f"metainfo classes {list((metainfo or {})['classes'])}"
            )
        meta.update(extra)
        self.split = split
        kwargs.setdefault(
            "data_prefix", dict(img_path=f"images/{split}", seg_map_path=f"seg/{split}")
        )
        kwargs.setdefault("ignore_index", info["ignore_index"])
        super().__init__(
            data_root=data_root, img_suffix=".png", seg_map_suffix=".png", metainfo=meta, **kwargs
        )

    def load_data_list(self) -> list[dict]:
        """Image/label pairs sorted by file name; every image needs its label file and vice versa."""
        img_dir = Path(self.data_prefix["img_path"])
        seg_dir = Path(self.data_prefix["seg_map_path"])
        for directory in (img_dir, seg_dir):
            if not directory.is_dir():
                raise FileNotFoundError(f"ToySegDataset: directory not found: {directory}")
        images = sorted(p.name for p in img_dir.iterdir() if p.suffix == self.img_suffix)
        labels = {p.name for p in seg_dir.iterdir() if p.suffix == self.seg_map_suffix}
        if not images:
            raise FileNotFoundError(f"ToySegDataset: no {self.img_suffix} images in {img_dir}")
        missing = [name for name in images if name not in labels]
        if missing:
            raise FileNotFoundError(
                f"ToySegDataset: label file {seg_dir / missing[0]} not found for image "
                f"{img_dir / missing[0]} ({len(missing)} labels missing)"
            )
        orphans = sorted(labels - set(images))
        if orphans:
            raise FileNotFoundError(
                f"ToySegDataset: image file {img_dir / orphans[0]} not found for label "
                f"{seg_dir / orphans[0]} ({len(orphans)} images missing)"
            )
        return [
            dict(
                img_path=str(img_dir / name),
                seg_map_path=str(seg_dir / name),
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[],
            )
            for name in images
        ]


@DATASETS.register_module()
class PascalVOCDataset20(PascalVOCDataset):
    """PASCAL VOC 2012 with the background class ignored: 20 classes (aeroplane = 0 ... tvmonitor = 19),
    VOC label 0 (background) -> 255, VOC label ``k`` -> ``k - 1``, 255 stays 255.

    MaskCLIP's ``PascalVOCDataset20`` (chongzhou96/MaskCLIP@245d31f ``mmseg/datasets/voc.py``): the
    VOC ``CLASSES`` without 'background' and ``reduce_zero_label=True``, the protocol of its "Pascal VOC
    2012 + Aug (w/o Background)" results (MaskCLIP ViT-B/16 49.5, MaskCLIP+ zero-shot 87.8). MMSeg's
    ``LoadAnnotations`` applies the reduction it reads from each sample (``reduce_zero_label``).

    Args:
        ann_file: split file (``ImageSets/Segmentation/val.txt``), as for ``PascalVOCDataset``.
        **kwargs: ``PascalVOCDataset`` arguments; ``reduce_zero_label`` may only be True.
    """

    METAINFO = dict(
        classes=PascalVOCDataset.METAINFO["classes"][1:],
        palette=PascalVOCDataset.METAINFO["palette"][1:],
    )

    def __init__(self, ann_file: str, **kwargs) -> None:
        if not kwargs.pop("reduce_zero_label", True):
            raise ValueError(
                "PascalVOCDataset20 ignores the background class: reduce_zero_label must be True "
                "(use PascalVOCDataset for 21 classes)"
            )
        super().__init__(ann_file=ann_file, reduce_zero_label=True, **kwargs)
