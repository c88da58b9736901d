"""Pseudo-masks for a whole dataset with image-level labels: resumable, atomic, verifiable; and their mIoU.

Output directory (``make_pseudo_masks``)::

    manifest.json           teacher fingerprint, CLIP-ES config, labels file + sha256, classes; "complete"
    classes.json            {"classes": ["background", ...], "palette": [[r, g, b], ...], "ignore_index": 255}
    labels/<stem>.png       dense argmax pseudo-labels (palette PNG: 0 background, category id c)
    masks/<stem>.png        training masks: labels with 255 where confidence < threshold (MMSeg seg maps)
    confidence/<stem>.png   uint8 round(255 * confidence)

A rerun skips images whose three PNGs exist and verify (decodable, right size, allowed values) and
recomputes the rest; a directory made with another teacher, config or labels file is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from distill.cam.clip_es import ClipES
from distill.cam.labels import ImageLabels, LabeledImage
from distill.cam.pseudo import confidence_to_uint8
from distill.evaluation.segmentation import SegmentationMetric
from distill.toy.world import voc_palette
from distill.utils import atomic_path, sha256_file, write_json_atomic

__all__ = [
    "MANIFEST_VERSION",
    "make_pseudo_masks",
    "verify_outputs",
    "evaluate_pseudo_masks",
    "read_png",
]

MANIFEST_VERSION = 1
_KINDS = ("labels", "masks", "confidence")


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG to a numpy array (palette indices for "P" images)."""
    with Image.open(path) as image:
        return np.asarray(image)


def _write_png(array: np.ndarray, path: Path, *, palette: list[int] | None = None) -> None:
    image = Image.fromarray(array)
    if palette is not None:
        image = image.convert("P") if image.mode != "P" else image
        image.putpalette(palette)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _load_rgb(path: Path, where: str) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image file not found: {path}")
    with Image.open(path) as image:
        return (
            torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
        )


def _image_size(path: Path, where: str) -> tuple[int, int]:
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image file not found: {path}")
    with Image.open(path) as image:
        return image.height, image.width


def _paths(out_dir: Path, entry: LabeledImage) -> dict[str, Path]:
    stem = Path(entry.file_name).stem
    return {kind: out_dir / kind / f"{stem}.png" for kind in _KINDS}


def verify_outputs(
    paths: Mapping[str, Path], *, size: tuple[int, int], allowed: set[int], ignore_index: int = 255
) -> str | None:
    """``None`` if an image's three outputs exist and are consistent, else the reason (for logs/tests)."""
    arrays = {}
    for kind, path in paths.items():
        if not path.is_file():
            return f"{path} missing"
        try:
            arrays[kind] = read_png(path)
        except (OSError, SyntaxError, ValueError) as err:
            return f"{path} unreadable ({err})"
        if arrays[kind].shape != size:
            return f"{path} has size {arrays[kind].shape}, expected {size}"
    labels, masks = arrays["labels"], arrays["masks"]
    extra = set(np.unique(labels).tolist()) - allowed
    if extra:
        return f"{paths['labels']} holds labels {sorted(extra)} outside {sorted(allowed)}"
    if not np.all((masks == labels) | (masks == ignore_index)):
        return f"{paths['masks']} disagrees with {paths['labels']}"
    return None


def _manifest(generator: ClipES, labels: ImageLabels) -> dict[str, Any]:
    prompts = [n if isinstance(n, str) else list(n) for n in generator.class_names]
    return {
        "version": MANIFEST_VERSION,
        "teacher": generator.teacher.fingerprint,
        "config": generator.config.to_dict(),
        "labels_file": str(Path(labels.source).resolve()),
        "labels_sha256": sha256_file(labels.source),
        "category_ids": list(labels.category_ids),
        "class_prompts": prompts,
    }


def _check_contiguous(labels: ImageLabels) -> None:
    if list(labels.category_ids) != list(range(1, len(labels.category_ids) + 1)):
        raise ValueError(
            f"{labels.source}: category ids {list(labels.category_ids)} must be 1..N in order (they are "
            f"the label values of the segmentation classes)"
        )


def _prepare_dir(out_dir: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    path = out_dir / "manifest.json"
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is corrupt ({err}); pass overwrite=True (--overwrite) to start over"
            ) from err
        differing = sorted(k for k in manifest if k != "labels_file" and old.get(k) != manifest[k])
        if differing:
            raise ValueError(
                f"{out_dir} holds pseudo-masks made with different {differing}; use another output "
                f"directory or overwrite=True (--overwrite)"
            )
    write_json_atomic(path, {**manifest, "complete": False}, indent=1)


def make_pseudo_masks(
    generator: ClipES,
    labels: ImageLabels,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write pseudo-masks and confidence maps for every image of ``labels`` (layout: module docstring).

    Args:
        generator: a :class:`ClipES` built on ``labels.prompts`` (class index ``i`` = ``category_ids[i]``).
        labels: validated image-level labels (category ids must be ``1..N``).
        image_dir: directory holding each entry's ``file_name``.
        out_dir: output directory (created).
        class_names: names for ``classes.json`` (default ``labels.names``).
        limit: only the first ``limit`` images (quick runs).
        overwrite: recompute everything, even in a directory made with other settings.

    Returns:
        ``{"images", "computed", "skipped", "out_dir", "manifest"}``.
    """
    _check_contiguous(labels)
    if len(generator.class_names) != len(labels.category_ids):
        raise ValueError(
            f"the generator has {len(generator.class_names)} classes but {labels.source} lists "
            f"{len(labels.category_ids)} categories"
        )
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image directory not found: {image_dir}")
    manifest = _manifest(generator, labels)
    _prepare_dir(out_dir, manifest, overwrite)
    palette = voc_palette()
    names = list(class_names or labels.names)
    write_json_atomic(
        out_dir / "classes.json",
        {
            "classes": ["background", *names],
            "ignore_index": generator.config.ignore_index,
            "palette": [palette[3 * i : 3 * i + 3] for i in range(len(names) + 1)],
            "unseen": [],
        },
    )
    entries = labels.images[:limit] if limit is not None else labels.images
    computed = skipped = 0
    bar = tqdm(entries, desc="CLIP-ES pseudo-masks", unit="img", disable=not progress)
    for entry in bar:
        where = f"{labels.source}: {entry.describe()}"
        paths = _paths(out_dir, entry)
        image_path = image_dir / entry.file_name
        allowed = {0, *entry.labels}
        if (
            not overwrite
            and verify_outputs(
                paths,
                size=_image_size(image_path, where),
                allowed=allowed,
                ignore_index=generator.config.ignore_index,
            )
            is None
        ):
            skipped += 1
            continue
        image = _load_rgb(image_path, where)
        result = generator.pseudo_label(
            image, [labels.index_of(c) for c in entry.labels], image_id=entry.image_id
        )
        # label values: class index + 1 == category id (ids are 1..N)
        _write_png(confidence_to_uint8(result.confidence), paths["confidence"])
        _write_png(result.label.cpu().numpy().astype(np.uint8), paths["labels"], palette=palette)
        _write_png(result.mask.cpu().numpy().astype(np.uint8), paths["masks"], palette=palette)
        computed += 1
        bar.set_postfix(computed=computed, skipped=skipped)
    summary = {"images": len(entries), "computed": computed, "skipped": skipped, "limit": limit}
    write_json_atomic(
        out_dir / "manifest.json",
        {**manifest, "complete": limit is None, "summary": summary},
        indent=1,
    )
    return {**summary, "out_dir": str(out_dir), "manifest": manifest}


def evaluate_pseudo_masks(
    out_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    num_classes: int,
    files: list[str] | None = None,
    class_names: list[str] | None = None,
    ignore_index: int = 255,
) -> dict[str, Any]:
    """mIoU of pseudo-masks against ground-truth label PNGs (same file names).

    Returns (percent): ``miou`` of the dense ``labels/`` (CLIP-ES's pseudo-mask mIoU), ``kept_miou`` of
    ``masks/`` on the pixels they keep, ``coverage`` (kept share of valid ground-truth pixels),
    ``per_class`` (dense IoU by name) and ``images``.
    """
    out_dir, gt_dir = Path(out_dir), Path(gt_dir)
    names = (
        files if files is not None else sorted(p.name for p in (out_dir / "labels").glob("*.png"))
    )
    if not names:
        raise FileNotFoundError(f"no pseudo-labels in {out_dir / 'labels'}")
    dense = SegmentationMetric(
        num_classes,
        seen=range(num_classes),
        unseen=[],
        ignore_index=ignore_index,
        class_names=class_names,
    )
    kept = SegmentationMetric(
        num_classes,
        seen=range(num_classes),
        unseen=[],
        ignore_index=ignore_index,
        class_names=class_names,
    )
    valid_pixels = kept_pixels = 0
    for name in names:
        stem = Path(name).stem
        gt_path = gt_dir / f"{stem}.png"
        if not gt_path.is_file():
            raise FileNotFoundError(f"ground truth not found for pseudo-mask {stem}: {gt_path}")
        gt = read_png(gt_path).astype(np.int64)
        label = read_png(out_dir / "labels" / f"{stem}.png").astype(np.int64)
        mask = read_png(out_dir / "masks" / f"{stem}.png").astype(np.int64)
        if label.shape != gt.shape or mask.shape != gt.shape:
            raise ValueError(
                f"pseudo-mask {stem}: size {label.shape} != ground truth {gt.shape} ({gt_path})"
            )
        try:
            dense.update(label, gt)
            keep = mask != ignore_index
            kept.update(np.where(keep, mask, 0), np.where(keep, gt, ignore_index))
        except ValueError as err:
            raise ValueError(f"pseudo-mask {stem}: {err}") from err
        valid = gt != ignore_index
        valid_pixels += int(valid.sum())
        kept_pixels += int((valid & keep).sum())
    dense_result, kept_result = dense.compute(), kept.compute()
    return {
        "miou": dense_result["miou"],
        "kept_miou": kept_result["miou"],
        "coverage": 100.0 * kept_pixels / max(valid_pixels, 1),
        "per_class": dense_result["per_class"],
        "images": len(names),
    }
