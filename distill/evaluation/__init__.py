"""Open-vocabulary evaluators: OV-COCO AP50 novel/base/all, OV-LVIS AP/APr/APc/APf, segmentation mIoU/hIoU."""

from .coco import evaluate_ov_coco, format_ov_table, load_coco_gt
from .detections import check_detections
from .lvis import evaluate_ov_lvis, lvis_numpy_incompatibility
from .segmentation import SegmentationMetric

__all__ = [
    "SegmentationMetric",
    "check_detections",
    "evaluate_ov_coco",
    "evaluate_ov_lvis",
    "format_ov_table",
    "load_coco_gt",
    "lvis_numpy_incompatibility",
]
