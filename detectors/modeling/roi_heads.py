"""ViLD's RoI heads: text-embedding classifier (ViLD-text), region distillation (ViLD-image) and the
separate distillation branch of ViLD-ensemble."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.box_head import build_box_head
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor, nn
from torch.nn import functional as F

from distill.losses import l1_region_distill
from distill.vocab import ClassifierFile

from ..config import classifier_text_space
from ..host import forward_mask, require_pinned_detectron2
from .poolers import OVROIPooler
from .vild_predictor import ViLDOutputLayers

__all__ = ["ViLDROIHeads", "DistillTargets", "training_vocabulary"]

logger = logging.getLogger(__name__)


class DistillTargets(NamedTuple):
    """One image's distillation regions: ``boxes [K, 4]`` (xyxy, input-image coordinates) and the
    teacher's ``embeddings [K, D]``."""

    boxes: Tensor
    embeddings: Tensor


def training_vocabulary(cfg) -> tuple[list[str], Tensor, Tensor, str]:
    """``(names, embeddings [C, D], seen [C] bool, teacher_fingerprint)`` the model is built with.

    Names and ``seen`` (False for novel / LVIS-rare classes, which never enter the training softmax)
    are ``MODEL.VILD.CLASSES.NAMES / SEEN``, resolved from ``DATASETS.TRAIN`` by the data side
    (``detectors.data.resolve_training_classes``); embeddings are the rows of
    ``MODEL.VILD.TEXT_EMBEDDINGS`` for those names. The model reads nothing else.
    """
    classes = cfg.MODEL.VILD.CLASSES
    if not classes.NAMES:
        raise ValueError(
            "MODEL.VILD.CLASSES.NAMES is empty: resolve the training vocabulary from "
            "DATASETS.TRAIN with detectors.data.resolve_training_classes(cfg) "
            "(tools/train_net.py and OVPredictor do) before building the model"
        )
    if len(classes.SEEN) != len(classes.NAMES):
        raise ValueError(
            f"MODEL.VILD.CLASSES.SEEN has {len(classes.SEEN)} entries for "
            f"{len(classes.NAMES)} names (MODEL.VILD.CLASSES.NAMES)"
        )
    if not cfg.MODEL.VILD.TEXT_EMBEDDINGS:
        raise ValueError(
            "MODEL.VILD.TEXT_EMBEDDINGS is empty: set it to a {names, embeddings, teacher_fingerprint} "
            ".pt file, or run tools/train_net.py, which computes it with MODEL.VILD.TEACHER"
        )
    names = list(classes.NAMES)
    table = ClassifierFile.load(cfg.MODEL.VILD.TEXT_EMBEDDINGS)
    space = classifier_text_space(cfg)
    table.check_text_space(space, source=f"this model (text space {space}: MODEL.BARON.TEXT_SPACE)")
    seen = torch.tensor([bool(s) for s in classes.SEEN], dtype=torch.bool)
    return names, table.select(names), seen, table.teacher_fingerprint


@ROI_HEADS_REGISTRY.register()
class ViLDROIHeads(StandardROIHeads):
    """Standard FPN RoI heads with ViLD's classifier and distillation.

    * ViLD-text: ``box_predictor`` is a :class:`ViLDOutputLayers` (cosine logits over text
      embeddings, learned background, class-agnostic boxes; class-agnostic masks when MASK_ON).
    * ViLD-image (``distill_weight > 0``): the distillation boxes of each image are concatenated
      with its sampled RoIs, pooled and passed through the box head together, then split; the
      distillation part's region embeddings are pulled to the teacher's by
      ``distill.losses.l1_region_distill`` (loss ``loss_distill``).
    * ViLD-ensemble (``image_head`` set): the distillation boxes go through a separate box head and
      projection instead; at inference both branches score every proposal.

    The vocabulary can be swapped without touching weights: :meth:`set_vocabulary`.
    """

    @configurable
    def __init__(
        self,
        *,
        distill_weight: float = 0.0,
        image_head: nn.Module | None = None,
        image_projection: nn.Module | None = None,
        teacher_fingerprint: str = "",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (image_head is None) != (image_projection is None):
            raise ValueError("ViLD-ensemble needs both image_head and image_projection")
        if not isinstance(self.box_predictor, ViLDOutputLayers):
            raise TypeError(
                f"ViLDROIHeads needs a ViLDOutputLayers box predictor, got {type(self.box_predictor)}"
            )
        self.distill_weight = float(distill_weight)
        self.image_head = image_head
        self.image_projection = image_projection
        self.teacher_fingerprint = teacher_fingerprint

    @classmethod
    def from_config(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
            raise ValueError("ViLDROIHeads does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES")
        if cfg.MODEL.KEYPOINT_ON:
            raise ValueError("ViLDROIHeads does not support keypoints")
        if not cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            raise ValueError(
                "ViLD regresses class-agnostic boxes (the vocabulary is swappable): set "
                "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG True"
            )
        if cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE != "smooth_l1":
            raise ValueError(
                f"ViLDROIHeads supports MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE smooth_l1 only, got "
                f"{cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE!r}"
            )
        if cfg.MODEL.MASK_ON and not cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK:
            raise ValueError(
                "ViLD predicts class-agnostic masks: set MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK True"
            )
        ret = super().from_config(cfg, input_shape)
        ret["num_classes"] = ret["box_predictor"].num_classes
        ret["distill_weight"] = (
            cfg.MODEL.VILD.DISTILL.WEIGHT if cfg.MODEL.VILD.DISTILL.ENABLED else 0.0
        )
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        require_pinned_detectron2("StandardROIHeads._init_box_head (overridden here)")
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(
                f"RoI feature maps {in_features} have different channel counts {sorted(channels)}"
            )
        pooler_class = OVROIPooler if cfg.MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD else ROIPooler
        pooler = pooler_class(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[k].stride for k in in_features),
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        )
        shape = ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)
        box_head = build_box_head(cfg, shape)
        names, embeddings, seen, fingerprint = training_vocabulary(cfg)
        predictor = cls._build_predictor(
            cfg,
            box_head.output_shape,
            class_embeddings=embeddings,
            class_names=names,
            seen=seen,
            teacher_fingerprint=fingerprint,
        )
        ret = {
            "box_in_features": in_features,
            "box_pooler": pooler,
            "box_head": box_head,
            "box_predictor": predictor,
            "teacher_fingerprint": fingerprint,
        }
        if cfg.MODEL.VILD.ENSEMBLE:
            image_head = build_box_head(cfg, shape)
            ret["image_head"] = image_head
            ret["image_projection"] = nn.Linear(
                image_head.output_shape.channels, predictor.projection.out_features
            )
        return ret

    @classmethod
    def _build_predictor(
        cls,
        cfg,
        input_shape: ShapeSpec,
        *,
        class_embeddings: Tensor,
        class_names: list[str],
        seen: Tensor,
        teacher_fingerprint: str,
    ) -> ViLDOutputLayers:
        """The box predictor (subclasses swap in their own ``ViLDOutputLayers``)."""
        del teacher_fingerprint
        return ViLDOutputLayers(
            cfg, input_shape, class_embeddings=class_embeddings, class_names=class_names, seen=seen
        )

    # ------------------------------------------------------------------ vocabulary API
    def set_vocabulary(
        self,
        text_embeddings: Tensor,
        names: Sequence[str],
        *,
        seen: Tensor | Sequence[bool] | None = None,
    ) -> None:
        """Classify over ``names`` with ``text_embeddings [N, D]`` from now on (weights untouched).

        Predicted ``pred_classes`` index ``names``. ``seen`` marks classes trained on (default: names
        of the training vocabulary); it selects ViLD-ensemble's per-class weighting, and in training
        only seen classes are scored.
        """
        self.box_predictor.set_vocabulary(text_embeddings, names, seen=seen)
        self.num_classes = self.box_predictor.num_classes

    def get_vocabulary(self) -> tuple[Tensor, list[str], Tensor]:
        """``(embeddings [N, D], names, seen [N])`` currently used (pass back to :meth:`set_vocabulary`)."""
        p = self.box_predictor
        return p.class_embeddings.clone(), list(p.class_names), p.seen.clone()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
        distill: list[DistillTargets] | None = None,
    ):
        del images
        if not self.training:
            instances = self.box_inference(features, proposals)
            return self.forward_with_given_boxes(features, instances), {}
        if not targets:
            raise ValueError("ViLDROIHeads needs targets in training")
        proposals = self.label_and_sample_proposals(proposals, targets)
        if self.distill_weight > 0:
            if distill is None:
                raise ValueError(
                    "ViLD distillation is enabled (MODEL.VILD.DISTILL.ENABLED) but the batch has no "
                    "'distill_boxes'/'distill_embeddings': build the training loader with region "
                    "targets (detectors.data.OVDatasetMapper(region_targets=...))"
                )
            if len(distill) != len(proposals):
                raise ValueError(f"{len(distill)} distillation targets for {len(proposals)} images")
        losses = self._forward_box_train(
            features, proposals, distill if self.distill_weight > 0 else None
        )
        losses.update(forward_mask(self, features, proposals))
        return proposals, losses

    def _image_embed(self, pooled: Tensor) -> Tensor:
        """ViLD-ensemble distillation branch: normalized embeddings ``[R, D]`` of pooled features."""
        return F.normalize(self.image_projection(self.image_head(pooled).flatten(1)), dim=-1)

    def box_inference(
        self,
        features: dict[str, Tensor],
        proposals: list[Instances],
        *,
        classifier: Tensor | None = None,
        seen: Tensor | None = None,
    ) -> list[Instances]:
        """Detections per image (``pred_boxes``, ``scores``, ``pred_classes``) of the box branch for
        ``proposals``: pooling, box head, cosine classifier (both branches for ViLD-ensemble), box
        decoding and ``fast_rcnn_inference``.

        ``classifier [K, D]`` (L2-normalized) and ``seen [K]`` (bool; ViLD-ensemble's per-class
        weighting) replace the current vocabulary for this call only (export takes them as graph
        inputs).
        """
        feats = [features[f] for f in self.box_in_features]
        pooled = self.box_pooler(feats, [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(self.box_head(pooled), classifier=classifier)
        image_embeddings = self._image_embed(pooled) if self.image_head is not None else None
        instances, _ = self.box_predictor.inference(
            predictions,
            proposals,
            image_embeddings=image_embeddings,
            classifier=classifier,
            seen=seen,
        )
        return instances

    def _forward_box_train(
        self,
        features: dict[str, Tensor],
        proposals: list[Instances],
        distill: list[DistillTargets] | None,
    ) -> dict[str, Tensor]:
        feats = [features[f] for f in self.box_in_features]
        if distill is None:
            pooled = self.box_pooler(feats, [p.proposal_boxes for p in proposals])
            return self.box_predictor.losses(self.box_predictor(self.box_head(pooled)), proposals)
        # ViLD: concatenate each image's distillation boxes to its sampled RoIs, pool once, split.
        boxes = [
            Boxes(torch.cat([p.proposal_boxes.tensor, d.boxes.to(p.proposal_boxes.tensor)]))
            for p, d in zip(proposals, distill)
        ]
        is_distill = torch.cat(
            [
                torch.cat(
                    [
                        torch.zeros(len(p), dtype=torch.bool),
                        torch.ones(len(d.boxes), dtype=torch.bool),
                    ]
                )
                for p, d in zip(proposals, distill)
            ]
        ).to(feats[0].device)
        pooled = self.box_pooler(feats, boxes)
        teacher = torch.cat([d.embeddings for d in distill]).to(pooled)
        if self.image_head is None:
            x = self.box_head(pooled)
            losses = self.box_predictor.losses(self.box_predictor(x[~is_distill]), proposals)
            student = self.box_predictor.embed(x[is_distill])
        else:
            losses = self.box_predictor.losses(
                self.box_predictor(self.box_head(pooled[~is_distill])), proposals
            )
            if int(is_distill.sum()) >= 2:  # the branch's batch norm needs two regions
                student = self._image_embed(pooled[is_distill])
            else:
                student, teacher = None, teacher[:0]
        if student is None or student.shape[0] == 0:
            zero = sum(p.sum() for p in self._distill_parameters()) * 0.0
            losses["loss_distill"] = zero
        else:
            losses["loss_distill"] = self.distill_weight * l1_region_distill(student, teacher)
        return losses

    def _distill_parameters(self) -> list[Tensor]:
        """Parameters the distillation loss reaches (keeps the graph when a batch has no region)."""
        if self.image_head is not None:
            return list(self.image_head.parameters()) + list(self.image_projection.parameters())
        return list(self.box_predictor.projection.parameters())
