"""``ValidateSegMap``: fail loudly, naming the file, on labels outside the vocabulary or size mismatches."""

from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

__all__ = ["ValidateSegMap"]


@TRANSFORMS.register_module()
class ValidateSegMap(BaseTransform):
    """Check a freshly loaded label map; place it right after ``LoadAnnotations``.

    Checks that the label map exists (when the sample names one; label-free inference passes
    through), has the original image's height and width (``ori_shape``, so
    test pipelines that resize the image before loading labels work too), and only holds labels in
    ``[0, num_classes)`` or ``ignore_index``.

    Args:
        num_classes: size of the label vocabulary.
        ignore_index: the one extra allowed label.

    Raises:
        ValueError: naming the label (and image) file.
    """

    def __init__(self, *, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)

    def transform(self, results: dict) -> dict:
        seg_path = results.get("seg_map_path", "<no seg_map_path>")
        img_path = results.get("img_path", "<no img_path>")
        seg = results.get("gt_seg_map")
        if seg is None and "seg_map_path" not in results:
            return results  # inference without labels (e.g. mmseg.apis.inference_model)
        if seg is None:
            raise ValueError(
                f"{seg_path}: no label map loaded for image {img_path} (put ValidateSegMap after "
                f"LoadAnnotations)"
            )
        shape = results.get("ori_shape")
        if shape is None and results.get("img") is not None:
            shape = results["img"].shape
        if shape is not None and tuple(seg.shape[:2]) != tuple(shape[:2]):
            raise ValueError(
                f"label file {seg_path} is {seg.shape[1]}x{seg.shape[0]} (WxH) but image {img_path} "
                f"is {shape[1]}x{shape[0]}"
            )
        values = np.unique(seg)
        bad = values[(values != self.ignore_index) & ((values < 0) | (values >= self.num_classes))]
        if bad.size:
            raise ValueError(
                f"label file {seg_path} holds label values {bad.tolist()[:10]} outside the vocabulary "
                f"[0, {self.num_classes}) (ignore_index {self.ignore_index})"
            )
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})"
