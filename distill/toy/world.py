"""Write the toy open-vocabulary world to disk in real dataset formats.

Layout under ``root``::

    world.json                              manifest: version, seed, config, categories, file checksums
    images/{train,val}/NNNNNN.png           RGB detection/segmentation images
    annotations/instances_train.json        COCO instances, BASE categories only (novel objects unannotated)
    annotations/instances_val.json          COCO instances, all 12 categories (+ LVIS-style fields)
    seg/{train,val}/NNNNNN.png              semantic labels, palette PNG: 0 background, 1..12 category ids
    seg/classes.json                        class names, palette, unseen (novel) classes
    labels/image_labels_{train,val}.json    image-level labels (all categories present)
    captions/captions.jsonl + images/       the teacher's separate image-caption corpus (all 12 categories)

Every image is a pure function of ``(seed, stream, index)``; PNG and JSON writes are deterministic, so the
same seed and config give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..utils import sha256_file, sha256_json
from .scene import SceneObject, render_background, sample_scene
from .shapes import CATEGORIES, COLORS

GENERATOR_VERSION = 2
SPLITS = ("train", "val")
_STREAMS = {"train": 0, "val": 1, "captions": 2}

_SHAPE_TEMPLATES = (
    "a photo of a {shape}.",
    "a {shape}.",
    "a close-up photo of a {shape}.",
    "a picture of a {shape}.",
    "a {shape} on a textured background.",
    "a cropped photo of a {shape}.",
    "a photo of the {shape}.",
)
_COLOR_TEMPLATES = (
    "a photo of a {color} {shape}.",
    "a {color} {shape}.",
    "a {shape} shape colored {color}.",
    "a cropped photo of a {color} {shape}.",
)
COLOR_CAPTION_FRACTION = (
    0.4  # the rest of the captions name only the shape, which forces shape features
)
_BACKGROUND_CAPTIONS = (
    "a photo of an empty background.",
    "an empty textured background.",
    "a photo of a plain background.",
    "a background with no shapes.",
)


@dataclass(frozen=True)
class ToyWorldConfig:
    """Sizes of the toy world. The defaults fit world + teacher + a ViLD run in minutes on 2 CPU cores."""

    n_train: int = 600
    n_val: int = 200
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 6
    n_captions: int = 6000
    caption_image_size: int = 64
    crop_fraction: float = 0.8  # of captions: object-centred crops of scenes (ViLD-crop-like)
    background_fraction: float = 0.06  # of captions: empty backgrounds; the rest are small scenes

    def __post_init__(self) -> None:
        if not 64 <= self.image_size <= 512:
            raise ValueError(
                f"ToyWorldConfig.image_size must be in [64, 512], got {self.image_size}"
            )
        if not 16 <= self.caption_image_size <= 256:
            raise ValueError(
                f"ToyWorldConfig.caption_image_size must be in [16, 256], got {self.caption_image_size}"
            )
        if not 1 <= self.min_objects <= self.max_objects <= 12:
            raise ValueError(
                f"ToyWorldConfig needs 1 <= min_objects <= max_objects <= 12, got "
                f"{self.min_objects}, {self.max_objects}"
            )
        for name in ("n_train", "n_val", "n_captions"):
            if getattr(self, name) < 1:
                raise ValueError(f"ToyWorldConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (
            0 <= self.crop_fraction
            and 0 <= self.background_fraction
            and self.crop_fraction + self.background_fraction <= 1
        ):
            raise ValueError(
                "ToyWorldConfig: crop_fraction + background_fraction must lie in [0, 1]"
            )

    @classmethod
    def from_overrides(cls, **overrides: Any) -> ToyWorldConfig:
        """Build a config from keyword overrides, rejecting unknown names with a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown toy-world size option(s) {unknown}; known: {sorted(known)}")
        return cls(**overrides)

    @property
    def key(self) -> str:
        """Short stable hash of the config (part of the cache directory name)."""
        return sha256_json(asdict(self))[:10]


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB triples flattened), index 255 included."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def category_dicts() -> list[dict[str, Any]]:
    """COCO category entries (with ``split`` and the LVIS fields: novel are "r", base "f")."""
    return [
        {
            "id": c.id,
            "name": c.name,
            "supercategory": "shape",
            "split": c.split,
            "synonyms": [c.name],
            "frequency": "f" if c.split == "base" else "r",
        }
        for c in CATEGORIES
    ]


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], index])


def _save_png(array: np.ndarray, path: Path, *, palette: list[int] | None = None) -> None:
    image = Image.fromarray(array)
    if palette is not None:
        image = image.convert("P") if image.mode != "P" else image
        image.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=1)


def _annotation(obj: SceneObject, *, ann_id: int, image_id: int) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
    x1, y1, x2, y2 = obj.box_xyxy
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.category.id,
        "iscrowd": 0,
        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
        "area": float(obj.mask.sum()),
        "segmentation": {
            "size": [int(v) for v in rle["size"]],
            "counts": rle["counts"].decode("ascii"),
        },
    }


def _write_split(
    root: Path, split: str, *, seed: int, config: ToyWorldConfig, progress: bool
) -> None:
    n = config.n_train if split == "train" else config.n_val
    palette = voc_palette()
    images, annotations, labels = [], [], []
    base_ids = {c.id for c in CATEGORIES if c.split == "base"}
    all_ids = [c.id for c in CATEGORIES]
    for index in tqdm(
        range(n), desc=f"toy world: {split} images", disable=not progress, leave=False
    ):
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        image, objects = sample_scene(
            _rng(seed, split, index),
            size=config.image_size,
            min_objects=config.min_objects,
            max_objects=config.max_objects,
        )
        _save_png(image, root / "images" / split / file_name)
        seg = np.zeros(image.shape[:2], dtype=np.uint8)
        for obj in objects:
            seg[obj.mask] = obj.category.id
        _save_png(seg, root / "seg" / split / file_name, palette=palette)
        present = sorted({obj.category.id for obj in objects})
        annotated = present if split == "val" else sorted(set(present) & base_ids)
        verified = all_ids if split == "val" else sorted(base_ids)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": config.image_size,
                "height": config.image_size,
                "neg_category_ids": sorted(set(verified) - set(annotated)),
                "not_exhaustive_category_ids": [],
            }
        )
        for obj in objects:
            if split == "val" or obj.category.id in base_ids:
                annotations.append(_annotation(obj, ann_id=len(annotations) + 1, image_id=image_id))
        labels.append({"id": image_id, "file_name": file_name, "labels": present})
    note = (
        "base categories only; novel objects are present but unannotated"
        if split == "train"
        else "all"
    )
    coco = {
        "info": {
            "description": f"ovdistill toy world, {split} ({note})",
            "version": str(GENERATOR_VERSION),
            "seed": seed,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": category_dicts(),
    }
    _write_json(root / "annotations" / f"instances_{split}.json", coco)
    _write_json(
        root / "labels" / f"image_labels_{split}.json",
        {"categories": category_dicts(), "images": labels},
    )


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _phrase(obj: SceneObject) -> str:
    return f"a {obj.color} {obj.category.name}"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _crop_square(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    *,
    scale: float,
    jitter: np.ndarray,
    out_size: int,
) -> np.ndarray:
    """Square crop of side ``scale * max(w, h)`` around the (jittered) box centre, shifted inside the image."""
    size = image.shape[0]
    x1, y1, x2, y2 = box
    side = min(float(size), scale * max(x2 - x1, y2 - y1))
    cx, cy = (x1 + x2) / 2 + jitter[0] * side, (y1 + y2) / 2 + jitter[1] * side
    left = min(max(cx - side / 2, 0.0), size - side)
    top = min(max(cy - side / 2, 0.0), size - side)
    crop = Image.fromarray(image).resize(
        (out_size, out_size), Image.BILINEAR, box=(left, top, left + side, top + side)
    )
    return np.asarray(crop)


def iter_captions(
    *, seed: int, config: ToyWorldConfig
) -> Iterator[tuple[np.ndarray, str, str, list[SceneObject]]]:
    """Yield ``config.n_captions`` (image uint8 [s, s, 3], caption, kind, objects named) deterministically.

    Kinds: "crop" (every well-visible object of a full-size scene, cropped with context: what a teacher sees
    when it embeds a detection crop), "scene" (a small scene, all objects named), "background" (no object).
    """
    out, scene_index, emitted = config.caption_image_size, 0, 0
    while emitted < config.n_captions:
        rng = _rng(seed, "captions", scene_index)
        scene_index += 1
        draw = rng.random()
        if draw < config.background_fraction:
            background = np.clip(np.rint(render_background(rng, out)), 0, 255).astype(np.uint8)
            yield (
                background,
                _BACKGROUND_CAPTIONS[int(rng.integers(len(_BACKGROUND_CAPTIONS)))],
                "background",
                [],
            )
            emitted += 1
        elif draw < config.background_fraction + config.crop_fraction:
            image, objects = sample_scene(
                rng, size=config.image_size, min_objects=1, max_objects=config.max_objects
            )
            for obj in objects:
                if emitted >= config.n_captions or obj.mask.sum() < 0.7 * obj.full_area:
                    continue
                crop = _crop_square(
                    image,
                    obj.box_xyxy,
                    scale=rng.uniform(1.05, 1.5),
                    jitter=rng.uniform(-0.1, 0.1, 2),
                    out_size=out,
                )
                templates = (
                    _COLOR_TEMPLATES if rng.random() < COLOR_CAPTION_FRACTION else _SHAPE_TEMPLATES
                )
                template = templates[int(rng.integers(len(templates)))]
                yield crop, template.format(color=obj.color, shape=obj.category.name), "crop", [obj]
                emitted += 1
        else:
            image, objects = sample_scene(
                rng, size=config.image_size, min_objects=1, max_objects=3, radius_range=(0.18, 0.3)
            )
            named = [obj for obj in objects if obj.mask.sum() >= 0.5 * obj.full_area]
            small = np.asarray(Image.fromarray(image).resize((out, out), Image.BILINEAR))
            if rng.random() < COLOR_CAPTION_FRACTION:
                caption = f"a photo of {_join([_phrase(o) for o in named])}."
            else:
                caption = f"a photo of {_join([f'a {o.category.name}' for o in named])}."
            yield small, caption, "scene", named
            emitted += 1


def _write_captions(root: Path, *, seed: int, config: ToyWorldConfig, progress: bool) -> None:
    lines = []
    stream = iter_captions(seed=seed, config=config)
    for index, (image, caption, kind, objects) in enumerate(
        tqdm(
            stream,
            total=config.n_captions,
            desc="toy world: captions",
            disable=not progress,
            leave=False,
        )
    ):
        rel = f"images/{index + 1:06d}.png"
        _save_png(image, root / "captions" / rel)
        lines.append(
            json.dumps(
                {
                    "image": rel,
                    "caption": caption,
                    "kind": kind,
                    "objects": [{"category": o.category.name, "color": o.color} for o in objects],
                }
            )
        )
    (root / "captions" / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate_toy_world(
    root: str | Path, *, seed: int = 0, config: ToyWorldConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Generate the whole world under ``root`` (which should be empty) and return its manifest.

    The manifest is also written to ``root/world.json``; it lists a sha256 for every other file.
    """
    config = config or ToyWorldConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _write_split(root, split, seed=seed, config=config, progress=progress)
    novel = [c for c in CATEGORIES if c.split == "novel"]
    _write_json(
        root / "seg" / "classes.json",
        {
            "classes": ["background"] + [c.name for c in CATEGORIES],
            "ignore_index": 255,
            "unseen": [c.name for c in novel],
            "unseen_ids": [c.id for c in novel],
            "palette": [voc_palette()[3 * i : 3 * i + 3] for i in range(len(CATEGORIES) + 1)],
        },
    )
    _write_captions(root, seed=seed, config=config, progress=progress)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "world.json")
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": asdict(config),
        "categories": category_dicts(),
        "colors": {k: list(v) for k, v in COLORS.items()},
        "num_images": {"train": config.n_train, "val": config.n_val, "captions": config.n_captions},
        "files": {p.relative_to(root).as_posix(): sha256_file(p) for p in files},
    }
    _write_json(root / "world.json", manifest)
    return manifest


@dataclass(frozen=True)
class ToyWorld:
    """A generated toy world on disk (see the module docstring for the layout)."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> ToyWorld:
        root = Path(root)
        path = root / "world.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a toy world (no world.json)")
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def config(self) -> ToyWorldConfig:
        return ToyWorldConfig(**self.manifest["config"])

    @property
    def fingerprint(self) -> str:
        """sha256 of ``world.json`` (which itself hashes every file)."""
        return sha256_file(self.root / "world.json")

    @property
    def categories(self) -> list[dict[str, Any]]:
        return list(self.manifest["categories"])

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["categories"]]

    @property
    def base_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["categories"] if c["split"] == "base"]

    @property
    def novel_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["categories"] if c["split"] == "novel"]

    unseen = novel_names

    @property
    def train_json(self) -> Path:
        return self.instances_json("train")

    @property
    def val_json(self) -> Path:
        return self.instances_json("val")

    def instances_json(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{_check_split(split)}.json"

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / _check_split(split)

    def seg_dir(self, split: str) -> Path:
        return self.root / "seg" / _check_split(split)

    @property
    def seg_classes_json(self) -> Path:
        return self.root / "seg" / "classes.json"

    def image_labels_json(self, split: str) -> Path:
        return self.root / "labels" / f"image_labels_{_check_split(split)}.json"

    @property
    def captions(self) -> Path:
        """``captions.jsonl``; each line's ``image`` is relative to this file's directory."""
        return self.root / "captions" / "captions.jsonl"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"toy world split must be one of {SPLITS}, got {split!r}")
    return split


__all__ = [
    "GENERATOR_VERSION",
    "ToyWorld",
    "ToyWorldConfig",
    "generate_toy_world",
    "iter_captions",
    "category_dicts",
    "voc_palette",
]
