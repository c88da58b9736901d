"""Reading an image file in a detector's channel order (``INPUT.FORMAT``): the data mapper's, the
predictor's and the demo's reader, on ``distill.data.decode_image``."""

from __future__ import annotations

import os

import numpy as np

from distill.data import decode_image

__all__ = ["IMAGE_SUFFIXES", "PIXEL_FORMATS", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""File suffixes treated as images when a directory is given (``tools/demo.py``)."""
PIXEL_FORMATS = ("RGB", "BGR")


def read_image(
    path: str | os.PathLike, *, format: str = "RGB", image_id: object = None
) -> np.ndarray:
    """``[H, W, 3]`` uint8 image in ``format`` ("RGB" / "BGR"), EXIF orientation applied.

    Raises:
        FileNotFoundError / ValueError: a missing / unreadable file (naming it and ``image_id``), or
            an unsupported ``format``.
    """
    if format not in PIXEL_FORMATS:
        raise ValueError(
            f"image format {format!r} is not supported (INPUT.FORMAT must be one of "
            f"{PIXEL_FORMATS})"
        )
    image = decode_image(path, image_id=image_id)
    return image[:, :, ::-1] if format == "BGR" else image
