"""``ViLDRCNN``: Generalized R-CNN that forwards the batch's distillation targets to its RoI heads."""

from __future__ import annotations

import torch
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from torch import Tensor

from .roi_heads import DistillTargets

__all__ = ["ViLDRCNN", "BaronRCNN"]


@META_ARCH_REGISTRY.register()
class ViLDRCNN(GeneralizedRCNN):
    """Generalized R-CNN whose training inputs may carry ``distill_boxes [K, 4]`` (xyxy, in the input
    image) and ``distill_embeddings [K, D]`` (as produced by ``detectors.data.OVDatasetMapper``);
    they reach ``roi_heads(..., distill=[DistillTargets])``. Inference is GeneralizedRCNN's.

    The vocabulary lives in the RoI heads: ``model.roi_heads.set_vocabulary(embeddings, names)``.
    """

    def forward(self, batched_inputs: list[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        if "instances" not in batched_inputs[0]:
            raise ValueError("ViLDRCNN training inputs need 'instances' (ground truth)")
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        if self.proposal_generator is None:
            raise ValueError("ViLDRCNN needs a proposal generator (MODEL.PROPOSAL_GENERATOR)")
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(
            images, features, proposals, gt_instances, **self.roi_head_inputs(batched_inputs)
        )
        return {**detector_losses, **proposal_losses}

    def roi_head_inputs(self, batched_inputs: list[dict]) -> dict:
        """Extra keyword inputs of the RoI heads in training (ViLD: the distillation targets)."""
        return {"distill": self.distill_targets(batched_inputs)}

    def distill_targets(self, batched_inputs: list[dict]) -> list[DistillTargets] | None:
        """Per-image targets on the model's device, or None if no input carries any."""
        has = ["distill_boxes" in x for x in batched_inputs]
        if not any(has):
            return None
        if not all(has):
            raise ValueError("some inputs of the batch carry 'distill_boxes' and others do not")
        out = []
        for x in batched_inputs:
            boxes, emb = x["distill_boxes"], x.get("distill_embeddings")
            if not isinstance(emb, Tensor) or emb.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"image id {x.get('image_id')!r}: 'distill_embeddings' must be a tensor with one "
                    f"row per distill box ({boxes.shape[0]})"
                )
            out.append(DistillTargets(boxes.to(self.device).float(), emb.to(self.device).float()))
        return out


@META_ARCH_REGISTRY.register()
class BaronRCNN(ViLDRCNN):
    """:class:`ViLDRCNN` for BARON: in training its RoI heads (``BaronROIHeads``) also receive the
    input images as uint8 RGB ``[3, H, W]`` (for the online teacher), the image ids (queue masking)
    and the inputs' ``image_transform`` (float64 ``[4]`` or None per image: the augmentation, for
    the boxes cache; ``detectors.data.OVDatasetMapper`` puts it there).

    The teacher is attached with ``model.roi_heads.set_teacher(teacher)``; inference is ViLD's.
    """

    def roi_head_inputs(self, batched_inputs: list[dict]) -> dict:
        images = []
        for x in batched_inputs:
            image = x["image"]
            if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"image id {x.get('image_id')!r}: BARON's teacher needs uint8 [3, H, W] input "
                    f"images, got {image.dtype} {tuple(image.shape)}"
                )
            images.append(image.flip(0) if self.input_format == "BGR" else image)
        if any("image_id" not in x for x in batched_inputs):
            raise ValueError("BARON training inputs need 'image_id' (same-image queue masking)")
        return {
            "raw_images": images,
            "image_ids": [x["image_id"] for x in batched_inputs],
            "image_transforms": [x.get("image_transform") for x in batched_inputs],
        }
