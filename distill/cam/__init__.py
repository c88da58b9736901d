"""Weakly-supervised segmentation from image-level labels with CLIP (CLIP-ES).

* ``softmax_gradcam``: softmax-GradCAM of a CLIP image tower over [image labels + background prompts]
  (ViT: last block's ``ln_1``; ResNet: the attention-pool input);
* ``class_aware_affinity`` / ``refine_cams``: class-aware attention affinity (ViT only);
* ``ClipES`` / ``ClipESConfig``: the per-image pipeline -> pseudo-label + confidence (optional DenseCRF);
* ``make_pseudo_masks`` / ``evaluate_pseudo_masks``: a whole dataset, resumable, and its mIoU;
* ``load_image_labels`` / ``voc_image_labels``: image-level label files.
"""

from distill.cam.affinity import (
    box_mask_from_cam,
    cam_boxes,
    class_aware_affinity,
    connected_components,
    refine_cams,
    sinkhorn_normalize,
)
from distill.cam.clip_es import ClipES, ClipESConfig, ImageCams, PseudoLabel
from distill.cam.crf import CrfParams, CrfUnavailableError, crf_available, crf_image, dense_crf
from distill.cam.gradcam import (
    GradCamOutput,
    cam_input_size,
    gradcam_from_gradients,
    minmax_scale,
    softmax_gradcam,
)
from distill.cam.labels import (
    COCO_BACKGROUND_PROMPTS,
    VOC_BACKGROUND_PROMPTS,
    VOC_CLASSES,
    VOC_PROMPT_NAMES,
    ImageLabels,
    LabeledImage,
    check_image_labels,
    load_image_labels,
    voc_image_labels,
)
from distill.cam.masks import evaluate_pseudo_masks, make_pseudo_masks, verify_outputs
from distill.cam.pseudo import (
    background_scores,
    confidence_from_uint8,
    confidence_to_uint8,
    ignore_low_confidence,
    label_and_confidence,
    normalize_scores,
)

__all__ = [
    "box_mask_from_cam",
    "cam_boxes",
    "class_aware_affinity",
    "connected_components",
    "refine_cams",
    "sinkhorn_normalize",
    "ClipES",
    "ClipESConfig",
    "ImageCams",
    "PseudoLabel",
    "CrfParams",
    "CrfUnavailableError",
    "crf_available",
    "crf_image",
    "dense_crf",
    "GradCamOutput",
    "cam_input_size",
    "gradcam_from_gradients",
    "minmax_scale",
    "softmax_gradcam",
    "COCO_BACKGROUND_PROMPTS",
    "VOC_BACKGROUND_PROMPTS",
    "VOC_CLASSES",
    "VOC_PROMPT_NAMES",
    "ImageLabels",
    "LabeledImage",
    "check_image_labels",
    "load_image_labels",
    "voc_image_labels",
    "evaluate_pseudo_masks",
    "make_pseudo_masks",
    "verify_outputs",
    "background_scores",
    "confidence_from_uint8",
    "confidence_to_uint8",
    "ignore_low_confidence",
    "label_and_confidence",
    "normalize_scores",
]
