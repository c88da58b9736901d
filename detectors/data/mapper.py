"""Dataset mapper that attaches teacher region targets (``distill.targets``) to training dicts."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from distill.targets import RegionTargetProvider

from ..host import transform_annotations
from .images import read_image

__all__ = ["OVDatasetMapper", "image_frame_transform", "transform_region_boxes"]

logger = logging.getLogger(__name__)


def transform_region_boxes(
    boxes: np.ndarray,
    transforms: T.TransformList,
    *,
    original_size: tuple[int, int],
    image_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Map teacher boxes from the original image to the augmented one.

    Boxes are clipped to the original image, transformed with ``transforms`` (the image's own
    augmentation: resize, flip, crop ...) and clipped to the augmented image.

    Args:
        boxes: float32 ``[K, 4]`` xyxy in original image coordinates.
        original_size / image_size: ``(height, width)`` before / after augmentation.

    Returns:
        ``(boxes [K', 4], keep [K] bool)``: the boxes with positive area at both stages, and which of
        the input rows they are (zero-area, fully out-of-image or cropped-away boxes are dropped).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    h, w = original_size
    clipped = np.stack(
        [
            boxes[:, 0].clip(0, w),
            boxes[:, 1].clip(0, h),
            boxes[:, 2].clip(0, w),
            boxes[:, 3].clip(0, h),
        ],
        axis=1,
    )
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if keep.any():
        moved = transforms.apply_box(clipped[keep]).astype(np.float32)
        ih, iw = image_size
        moved = np.stack(
            [
                moved[:, 0].clip(0, iw),
                moved[:, 1].clip(0, ih),
                moved[:, 2].clip(0, iw),
                moved[:, 3].clip(0, ih),
            ],
            axis=1,
        )
        visible = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        keep[np.flatnonzero(keep)[~visible]] = False
        moved = moved[visible]
    else:
        moved = np.zeros((0, 4), np.float32)
    return moved, keep


def image_frame_transform(transforms: T.TransformList) -> torch.Tensor | None:
    """The augmentation of an image as the axis-aligned map ``x' = sx * x + tx``,
    ``y' = sy * y + ty`` from the original image to the augmented one: float64
    ``[4] = (sx, tx, sy, ty)`` (a flip has a negative scale), or None when ``transforms`` holds
    anything but Detectron2's resize, horizontal / vertical flip, crop, pad and no-op transforms.
    BARON's boxes cache (``detectors.modeling.boxes_cache``) maps its boxes with it.
    """
    sx, tx, sy, ty = 1.0, 0.0, 1.0, 0.0
    for t in transforms.transforms:
        if isinstance(t, T.ResizeTransform):
            ax, bx, ay, by = t.new_w / t.w, 0.0, t.new_h / t.h, 0.0
        elif isinstance(t, T.HFlipTransform):
            ax, bx, ay, by = -1.0, float(t.width), 1.0, 0.0
        elif isinstance(t, T.VFlipTransform):
            ax, bx, ay, by = 1.0, 0.0, -1.0, float(t.height)
        elif isinstance(t, T.CropTransform):
            ax, bx, ay, by = 1.0, -float(t.x0), 1.0, -float(t.y0)
        elif isinstance(t, T.PadTransform):
            ax, bx, ay, by = 1.0, float(t.x0), 1.0, float(t.y0)
        elif isinstance(t, T.NoOpTransform):
            continue
        else:
            return None
        sx, tx, sy, ty = ax * sx, ax * tx + bx, ay * sy, ay * ty + by
    return torch.tensor([sx, tx, sy, ty], dtype=torch.float64)


class OVDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` plus teacher region targets.

    In training, when ``region_targets`` is given, each mapped dict also holds ``distill_boxes``
    (float32 ``[K, 4]`` xyxy in the *augmented* image: transformed with the same augmentation as the
    image) and ``distill_embeddings`` (float32 ``[K, D]``), at most ``distill_rois_per_image``
    regions (a random subset, drawn from NumPy's global RNG, when the provider has more). Boxes that
    are zero-area or leave the (augmented) image are dropped; the first image where that happens is
    logged. Training dicts also hold ``image_transform`` (float64 ``[4]``,
    :func:`image_frame_transform`: how the image was resized / flipped; absent if the augmentation
    is not axis-aligned), for BARON's boxes cache. With ``INPUT.LSJ.ENABLED`` the training
    augmentation is large-scale jitter (ViLD's). Semantic-segmentation and precomputed-proposal
    inputs of the base mapper are not supported.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        region_targets: RegionTargetProvider | None = None,
        distill_rois_per_image: int = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(is_train, **kwargs)
        if distill_rois_per_image < 1:
            raise ValueError(f"distill_rois_per_image must be >= 1, got {distill_rois_per_image}")
        self.region_targets = region_targets
        self.distill_rois_per_image = int(distill_rois_per_image)
        self._logged_drop = False

    @classmethod
    def from_config(
        cls, cfg, is_train: bool = True, *, region_targets: RegionTargetProvider | None = None
    ):
        ret = super().from_config(cfg, is_train)
        lsj = cfg.INPUT.get("LSJ")
        if is_train and lsj is not None and lsj.ENABLED:
            ret["augmentations"] = [
                T.ResizeScale(lsj.MIN_SCALE, lsj.MAX_SCALE, lsj.SIZE, lsj.SIZE),
                T.FixedSizeCrop((lsj.SIZE, lsj.SIZE)),
                T.RandomFlip(horizontal=True),
            ]
            ret["recompute_boxes"] = False
        ret["region_targets"] = region_targets if is_train else None
        ret["distill_rois_per_image"] = cfg.MODEL.VILD.DISTILL.ROIS_PER_IMAGE
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(
            dataset_dict["file_name"],
            format=self.image_format,
            image_id=dataset_dict.get("image_id"),
        )
        utils.check_image_size(dataset_dict, image)
        original_size = image.shape[:2]
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        frame = image_frame_transform(transforms)
        if frame is not None:
            dataset_dict["image_transform"] = frame
        if "annotations" in dataset_dict:
            transform_annotations(self, dataset_dict, transforms, image_shape)
        if self.region_targets is not None:
            self._attach_region_targets(dataset_dict, transforms, original_size, image_shape)
        return dataset_dict

    def _attach_region_targets(
        self,
        dataset_dict: dict,
        transforms: T.TransformList,
        original_size: tuple[int, int],
        image_shape: tuple[int, int],
    ) -> None:
        image_id = dataset_dict["image_id"]
        boxes, embeddings = self.region_targets.get(image_id)
        moved, keep = transform_region_boxes(
            boxes, transforms, original_size=original_size, image_size=image_shape
        )
        embeddings = np.asarray(embeddings, dtype=np.float32)[keep]
        dropped = int((~keep).sum())
        if dropped and not self._logged_drop:
            logger.warning(
                "image id %r: %d of %d distillation boxes are zero-area or outside the (augmented) "
                "image and were dropped (logged for the first such image only)",
                image_id,
                dropped,
                len(keep),
            )
            self._logged_drop = True
        if len(moved) > self.distill_rois_per_image:
            pick = np.sort(np.random.choice(len(moved), self.distill_rois_per_image, replace=False))
            moved, embeddings = moved[pick], embeddings[pick]
        dataset_dict["distill_boxes"] = torch.as_tensor(
            np.ascontiguousarray(moved), dtype=torch.float32
        )
        dataset_dict["distill_embeddings"] = torch.as_tensor(
            np.ascontiguousarray(embeddings), dtype=torch.float32
        )
