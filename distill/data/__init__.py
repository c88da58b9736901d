"""Dataset files of COCO/LVIS format, framework-free: where an image entry's file is, decoding it,
and reading a json's images with their annotations (``ImageRecord``)."""

from distill.data.coco import ImageRecord, read_image_records
from distill.data.images import decode_image, image_path

__all__ = ["ImageRecord", "read_image_records", "decode_image", "image_path"]
