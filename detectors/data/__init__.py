"""The data side of ovdistill's detectors: open-vocabulary datasets (and the toy world's), image
reading and the test-time resize, the vocabularies resolved from the catalog, teacher region
targets, the region-target mapper and the resumable training loader."""

from .build import (
    ResumableTrainingSampler,
    ResumableTrainLoader,
    build_batched_test_loader,
    class_balanced_repeats,
    resumable_repeats,
)
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
from .images import IMAGE_SUFFIXES, read_image
from .mapper import OVDatasetMapper, transform_region_boxes
from .resize import PreparedImage, prepare_image, rescale_boxes
from .targets import cached_region_targets, online_region_targets, regions_json
from .toy import setup_toy_datasets, toy_world
from .vocabulary import (
    class_table,
    dataset_vocabulary,
    extra_test_classes,
    read_classifier,
    resolve_training_classes,
    training_classes,
)

__all__ = [
    "ResumableTrainingSampler",
    "ResumableTrainLoader",
    "build_batched_test_loader",
    "class_balanced_repeats",
    "resumable_repeats",
    "TOY_DATASETS",
    "check_image_files",
    "datasets_root",
    "get_ov_metadata",
    "load_ov_json",
    "register_ov_coco",
    "register_ov_dataset",
    "register_ov_lvis",
    "register_toy_datasets",
    "OVDatasetMapper",
    "transform_region_boxes",
    "IMAGE_SUFFIXES",
    "read_image",
    "PreparedImage",
    "prepare_image",
    "rescale_boxes",
    "cached_region_targets",
    "online_region_targets",
    "regions_json",
    "setup_toy_datasets",
    "toy_world",
    "class_table",
    "dataset_vocabulary",
    "extra_test_classes",
    "read_classifier",
    "resolve_training_classes",
    "training_classes",
]

register_ov_coco()
register_ov_lvis()
