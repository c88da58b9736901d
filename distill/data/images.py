"""The image file of a COCO/LVIS ``images`` entry and its decoding: the one implementation every
image reader of ovdistill goes through (region precompute, online targets, Detectron2 datasets and
mapper, predictor, toy evaluation)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["image_path", "decode_image"]


def image_path(image_entry: Mapping[str, Any], image_root: str | os.PathLike) -> Path:
    """The file of one ``images`` entry of a COCO/LVIS json, under ``image_root``.

    COCO entries: ``<image_root>/<file_name>``. LVIS v1 entries have no ``file_name`` but a
    ``coco_url`` such as ``http://images.cocodataset.org/train2017/000000391895.jpg``: the file is
    ``<image_root>/train2017/000000391895.jpg`` (Detectron2's layout, ``image_root`` = the COCO
    directory) if it exists or the flat ``<image_root>/000000391895.jpg`` does not, else the flat
    one (``image_root`` = the split directory).

    Raises:
        ValueError: the entry has neither ``file_name`` nor a ``coco_url`` ending in
            ``<split>/<name>`` (naming its image id).
    """
    root = Path(image_root)
    if "file_name" in image_entry:
        return root / str(image_entry["file_name"])
    parts = str(image_entry.get("coco_url") or "").rstrip("/").split("/")
    if len(parts) >= 2 and parts[-1]:
        nested, flat = root / parts[-2] / parts[-1], root / parts[-1]
        return nested if nested.exists() or not flat.exists() else flat
    raise ValueError(
        f"image id {image_entry.get('id')!r} has neither 'file_name' nor a 'coco_url' "
        f"(.../<split>/<name>): cannot locate its file under {root}"
    )


def decode_image(path: str | os.PathLike, *, image_id: Hashable | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB array (a writable copy) of an image file, EXIF orientation applied.

    Raises:
        FileNotFoundError: the file does not exist (naming it and ``image_id``).
        ValueError: the file is not a readable image (naming it and ``image_id``).
    """
    path = Path(path)
    owner = "" if image_id is None else f" (image id {image_id!r})"
    if not path.is_file():
        raise FileNotFoundError(f"image file {path}{owner} does not exist")
    try:
        with Image.open(path) as pil:
            return np.array(ImageOps.exif_transpose(pil).convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        reason = f"{type(err).__name__}: {err}"
        raise ValueError(f"{path}: not a readable image file{owner} ({reason})") from err
