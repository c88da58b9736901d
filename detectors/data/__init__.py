"""Open-vocabulary datasets, the region-target mapper and the resumable training loader."""
from .build import ResumableTrainingSampler, ResumableTrainLoader, build_batched_test_loader
from .datasets import (
    TOY_DATASETS,
    check_image_files,
    datasets_root,
    get_ov_metadata,
    load_ov_json,
    register_ov_coco,
    register_ov_dataset,
    register_ov_lvis,
    register_toy_datasets,
)
from .mapper import OVDatasetMapper, transform_region_boxes

__all__ = [
    "ResumableTrainingSampler", "ResumableTrainLoader", "build_batched_test_loader",
    "TOY_DATASETS", "check_image_files", "datasets_root",
    "get_ov_metadata", "load_ov_json", "register_ov_coco", "register_ov_dataset", "register_ov_lvis",
    "register_toy_datasets", "OVDatasetMapper", "transform_region_boxes",
]

register_ov_coco()
register_ov_lvis()
