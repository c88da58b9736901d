"""ViLD's text-embedding classifier (cosine logits over a swappable vocabulary) and box regressor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import smooth_l1_loss
from torch import Tensor, nn
from torch.nn import functional as F

from distill.vocab import cosine_logits, normalize_name, validate_class_names

from .box_head import build_box_regressor

__all__ = ["ViLDOutputLayers", "ensemble_scores", "cosine_logits"]

BOX_LOSS_NORMALIZERS = ("sampled", "foreground_x4")
UNSEEN_TRAIN_LOGITS = ("remove", "zero")


def ensemble_scores(
    text_probs: Tensor, image_probs: Tensor, seen: Tensor, *, weight: float = 2.0 / 3.0
) -> Tensor:
    """ViLD-ensemble class scores ``[R, C]``: geometric mean weighted per class.

    Seen (base) classes: ``p_text^weight * p_img^(1 - weight)``; unseen (novel) classes:
    ``p_text^(1 - weight) * p_img^weight``.

    Args:
        text_probs: ``[R, C]`` foreground probabilities of the text branch (softmax with background).
        image_probs: ``[R, C]`` probabilities of the distillation branch (softmax without background).
        seen: bool ``[C]``.
    """
    w = torch.where(
        seen,
        torch.full_like(seen, weight, dtype=text_probs.dtype),
        torch.full_like(seen, 1.0 - weight, dtype=text_probs.dtype),
    )
    return text_probs.clamp_min(0).pow(w) * image_probs.clamp_min(0).pow(1.0 - w)


class ViLDOutputLayers(nn.Module):
    """Projection to the teacher's space + cosine classifier over text embeddings + class-agnostic boxes.

    ``forward(x [R, F]) -> (logits [R, C + 1], deltas [R, 4])``; region embeddings come from
    :meth:`embed`. The vocabulary (``C`` frozen, normalized text embeddings and their names) is a
    non-persistent buffer: checkpoints hold no classifier, and :meth:`set_vocabulary` swaps it at any
    time. In training, logits of classes outside the training vocabulary (``seen`` False: novel /
    LVIS-rare classes) are handled by ``unseen_train_logits``: ``"remove"`` masks them to ``-inf``
    (they never enter the softmax); ``"zero"`` multiplies them by 0, as ViLD's LVIS code does
    (they stay in the softmax with logit 0). The learnable background embedding starts as
    N(0, 0.01) and is normalized at use.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        class_embeddings: Tensor,
        class_names: Sequence[str],
        seen: Tensor | Sequence[bool] | None = None,
        temperature: float = 0.01,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_weight: float = 1.0,
        ensemble_weight: float = 2.0 / 3.0,
        background_weight: float = 1.0,
        test_temperature: float | None = None,
        projection_dim: int | None = None,
        box_loss_normalizer: str = "sampled",
        unseen_train_logits: str = "remove",
        reg_hidden_dims: Sequence[int] = (),
    ) -> None:
        """``projection_dim``: output size of :attr:`projection` (default: the embedding size
        ``D``; subclasses whose :meth:`embed` maps projected features further set it).
        ``box_loss_normalizer``: see :meth:`box_reg_loss`; ``unseen_train_logits``: see the class
        docstring."""
        super().__init__()
        if box_loss_normalizer not in BOX_LOSS_NORMALIZERS:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER must be one of "
                f"{BOX_LOSS_NORMALIZERS}, got {box_loss_normalizer!r}"
            )
        if unseen_train_logits not in UNSEEN_TRAIN_LOGITS:
            raise ValueError(
                f"MODEL.VILD.UNSEEN_TRAIN_LOGITS must be one of {UNSEEN_TRAIN_LOGITS}, "
                f"got {unseen_train_logits!r}"
            )
        in_features = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        embed_dim = int(class_embeddings.shape[1])
        if temperature <= 0:
            raise ValueError(f"MODEL.VILD.TEMPERATURE must be > 0, got {temperature}")
        if test_temperature is not None and test_temperature <= 0:
            raise ValueError(f"test temperature must be > 0, got {test_temperature}")
        self.embed_dim = embed_dim
        self.projection = nn.Linear(in_features, projection_dim or embed_dim)
        self.bg_embedding = nn.Parameter(torch.randn(embed_dim) * 0.01)
        # reg_hidden_dims (ROI_BOX_HEAD.REG_HIDDEN_DIMS): () = one Linear, [1024] = BARON's MLP
        self.bbox_pred = build_box_regressor(
            in_features, len(box2box_transform.weights), hidden_dims=reg_hidden_dims
        )
        self.box2box_transform = box2box_transform
        self.temperature = float(temperature)
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_weight = box_reg_loss_weight
        self.box_loss_normalizer = box_loss_normalizer
        self.unseen_train_logits = unseen_train_logits
        self.ensemble_weight = float(ensemble_weight)
        self.background_weight = float(background_weight)
        self.test_temperature = float(test_temperature) if test_temperature else self.temperature
        self.register_buffer("class_embeddings", torch.zeros(0, embed_dim), persistent=False)
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.class_names: list[str] = []
        self.set_vocabulary(class_embeddings, class_names, seen=seen)
        self.training_names = frozenset(
            normalize_name(n) for n, s in zip(self.class_names, self.seen.tolist()) if s
        )

    @classmethod
    def from_config(
        cls,
        cfg,
        input_shape: ShapeSpec,
        *,
        class_embeddings: Tensor,
        class_names: Sequence[str],
        seen: Tensor | Sequence[bool] | None = None,
    ):
        return {
            "input_shape": input_shape,
            "box2box_transform": Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
            "class_embeddings": class_embeddings,
            "class_names": class_names,
            "seen": seen,
            "temperature": cfg.MODEL.VILD.TEMPERATURE,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "smooth_l1_beta": cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            "box_reg_loss_weight": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT,
            "ensemble_weight": cfg.MODEL.VILD.ENSEMBLE_WEIGHT,
            "box_loss_normalizer": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER,
            "unseen_train_logits": cfg.MODEL.VILD.UNSEEN_TRAIN_LOGITS,
            "reg_hidden_dims": list(cfg.MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS),
        }

    # ------------------------------------------------------------------ vocabulary
    @property
    def num_classes(self) -> int:
        return int(self.class_embeddings.shape[0])

    def set_vocabulary(
        self,
        embeddings: Tensor,
        names: Sequence[str],
        *,
        seen: Tensor | Sequence[bool] | None = None,
    ) -> None:
        """Replace the classifier by ``embeddings [N, D]`` (normalized here) for classes ``names``.

        ``seen`` (bool ``[N]``) marks the classes trained on: they are the only ones scored in
        training, and ViLD-ensemble weighs the two branches by it. Default: the names of the
        training vocabulary given at construction (case/space-insensitive).
        """
        names = [str(n) for n in names]
        embed_dim = self.embed_dim
        if embeddings.ndim != 2 or embeddings.shape != (len(names), embed_dim):
            raise ValueError(
                f"vocabulary embeddings must be [{len(names)}, {embed_dim}] for {len(names)} names, "
                f"got {list(embeddings.shape)}"
            )
        if not torch.isfinite(embeddings).all():
            raise ValueError("vocabulary embeddings contain non-finite values")
        validate_class_names(names, field="vocabulary names")
        keys = [normalize_name(n) for n in names]
        if seen is None:
            known = getattr(self, "training_names", None)
            seen = [True] * len(names) if known is None else [k in known for k in keys]
        seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
        if seen.numel() != len(names):
            raise ValueError(f"seen must have {len(names)} entries, got {seen.numel()}")
        device = self.projection.weight.device
        self.class_embeddings = F.normalize(embeddings.detach().float(), dim=-1).to(device)
        self.seen = seen.to(device)
        self.class_names = names

    # ------------------------------------------------------------------ forward
    def embed(self, x: Tensor) -> Tensor:
        """Normalized region embeddings ``[R, D]`` of box-head features ``x [R, F]``."""
        return F.normalize(self.projection(x.flatten(1)), dim=-1)

    def class_logits(
        self, embeddings: Tensor, *, background: bool = True, classifier: Tensor | None = None
    ) -> Tensor:
        """``[R, C (+1)]`` cosine logits / temperature of region ``embeddings [R, D]``.

        ``classifier [C, D]`` (L2-normalized) replaces the vocabulary for this call (inference);
        with the vocabulary's own classifier, unseen classes are removed (-inf) or zeroed in
        training (``unseen_train_logits``).
        """
        temperature = self.temperature if self.training else self.test_temperature
        own_vocabulary = classifier is None
        classifier = self.class_embeddings if own_vocabulary else classifier
        logits = cosine_logits(
            embeddings,
            classifier,
            temperature=temperature,
            background=F.normalize(self.bg_embedding, dim=0) if background else None,
        )
        if self.training and own_vocabulary and not bool(self.seen.all()):
            unseen = torch.cat(
                [~self.seen, self.seen.new_zeros(logits.shape[1] - self.num_classes)]
            )
            if self.unseen_train_logits == "zero":
                # tensorflow/tpu@7dc921f projects/vild/modeling/vild_losses.py: the logits
                # (background included, its mask entry 1) are multiplied by the 0/1 rare mask.
                logits = logits * (~unseen).to(logits.dtype)
            else:
                logits = logits.masked_fill(unseen, float("-inf"))
        return logits

    def forward(self, x: Tensor, *, classifier: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(logits [R, C + 1], deltas [R, 4])`` of box-head features ``x [R, F]``
        (``classifier``: see :meth:`class_logits`)."""
        x = x.flatten(1)
        return self.class_logits(self.embed(x), classifier=classifier), self.bbox_pred(x)

    # ------------------------------------------------------------------ training
    def losses(
        self, predictions: tuple[Tensor, Tensor], proposals: list[Instances]
    ) -> dict[str, Tensor]:
        """Softmax cross-entropy over [training classes, background] and smooth-L1 box regression.

        Background RoIs weigh ``background_weight`` in the CE (1.0: plain mean; BARON FPN: 0.7).

        The box loss is :meth:`box_reg_loss` of the foreground RoIs.
        """
        logits, deltas = predictions
        gt_classes = (
            cat([p.gt_classes for p in proposals])
            if proposals
            else logits.new_zeros(0, dtype=torch.long)
        )
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        if fg.any():
            unseen = ~self.seen[gt_classes[fg]]
            if unseen.any():
                bad = sorted({self.class_names[i] for i in gt_classes[fg][unseen].tolist()})
                raise ValueError(
                    f"training annotations of classes outside the training vocabulary: {bad}; novel "
                    f"classes must not be annotated in training data (register it with base_only)"
                )
        _log_accuracy(logits, gt_classes, self.num_classes)
        if not gt_classes.numel():
            loss_cls = logits.sum() * 0
        elif self.background_weight != 1.0:  # mmdet's class_weight: per-RoI weight, mean over RoIs
            weight = torch.where(gt_classes == self.num_classes, self.background_weight, 1.0)
            loss_cls = (F.cross_entropy(logits, gt_classes, reduction="none") * weight).mean()
        else:
            loss_cls = F.cross_entropy(logits, gt_classes, reduction="mean")
        if proposals:
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals])
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
            )
        else:
            proposal_boxes = gt_boxes = deltas.new_zeros(0, 4)
        fg_index = fg.nonzero().squeeze(1)
        target = self.box2box_transform.get_deltas(proposal_boxes[fg_index], gt_boxes[fg_index])
        loss_box = self.box_reg_loss(deltas[fg_index], target, num_sampled=gt_classes.numel())
        return {"loss_cls": loss_cls, "loss_box_reg": loss_box * self.box_reg_loss_weight}

    def box_reg_loss(
        self, pred_deltas: Tensor, target_deltas: Tensor, *, num_sampled: int
    ) -> Tensor:
        """Smooth-L1 (beta ``smooth_l1_beta``) of foreground ``pred_deltas [F, 4]`` against
        ``target_deltas [F, 4]``, summed and divided according to ``box_loss_normalizer``:

        * ``"sampled"``: by ``num_sampled``, the number of sampled RoIs, foreground and background
          (Detectron2's and mmdet's normalization);
        * ``"foreground_x4"``: by ``4 F``, the number of foreground box coordinates (ViLD:
          tensorflow/tpu@7dc921f models/official/detection/modeling/losses.py, FastrcnnBoxLoss is
          a Huber loss, delta 1, with weights on the 4 coordinates of foreground RoIs and
          ``Reduction.SUM_BY_NONZERO_WEIGHTS``; 0 without foreground).
        """
        loss = smooth_l1_loss(pred_deltas, target_deltas, self.smooth_l1_beta, reduction="sum")
        if self.box_loss_normalizer == "foreground_x4":
            return loss / max(target_deltas.numel(), 1)
        return loss / max(num_sampled, 1)

    # ------------------------------------------------------------------ inference
    def predict_boxes(
        self, predictions: tuple[Tensor, Tensor], proposals: list[Instances]
    ) -> tuple[Tensor, ...]:
        """Per image ``[R_i, 4]`` decoded boxes."""
        if not proposals:
            return ()
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals])
        boxes = self.box2box_transform.apply_deltas(predictions[1], proposal_boxes)
        return _per_image(boxes, proposals)

    def predict_probs(
        self,
        predictions: tuple[Tensor, Tensor],
        proposals: list[Instances],
        *,
        image_embeddings: Tensor | None = None,
        classifier: Tensor | None = None,
        seen: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """Per image ``[R_i, C + 1]`` class probabilities (background last).

        With ``image_embeddings [R, D]`` (ViLD-ensemble's distillation branch) the foreground
        probabilities are :func:`ensemble_scores` of the two branches, weighted per class by
        ``seen [C]`` (default: the vocabulary's); ``classifier [C, D]`` as in :meth:`class_logits`
        (then ``seen`` is required for the ensemble).
        """
        probs = F.softmax(predictions[0], dim=-1)
        if image_embeddings is not None:
            if seen is None and classifier is not None:
                raise ValueError(
                    "ViLD-ensemble scoring with a given classifier needs seen [K] "
                    "(bool, class trained on)"
                )
            image_logits = self.class_logits(
                image_embeddings, background=False, classifier=classifier
            )
            fg = ensemble_scores(
                probs[:, :-1],
                F.softmax(image_logits, dim=-1),
                self.seen if seen is None else seen.bool(),
                weight=self.ensemble_weight,
            )
            probs = torch.cat([fg, probs[:, -1:]], dim=1)
        return _per_image(probs, proposals)

    def inference(
        self,
        predictions: tuple[Tensor, Tensor],
        proposals: list[Instances],
        *,
        image_embeddings: Tensor | None = None,
        classifier: Tensor | None = None,
        seen: Tensor | None = None,
    ) -> tuple[list[Instances], list[Tensor]]:
        """Detections per image (score threshold, per-class NMS, top-k), as ``fast_rcnn_inference``;
        ``classifier`` / ``seen`` as in :meth:`predict_probs`."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(
            predictions,
            proposals,
            image_embeddings=image_embeddings,
            classifier=classifier,
            seen=seen,
        )
        return fast_rcnn_inference(
            boxes,
            scores,
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )


def _per_image(values: Tensor, proposals: list[Instances]) -> tuple[Tensor, ...]:
    """``values [R, ...]`` split into the rows of each image's proposals (no split for one image, so
    traced graphs keep the number of proposals dynamic)."""
    return (values,) if len(proposals) == 1 else values.split([len(p) for p in proposals])


def _log_accuracy(logits: Tensor, gt_classes: Tensor, num_classes: int) -> None:
    """Foreground / overall classification accuracy of the sampled RoIs to the event storage."""
    if gt_classes.numel() == 0:
        return
    pred = logits.argmax(dim=1)
    fg = (gt_classes >= 0) & (gt_classes < num_classes)
    storage = get_event_storage()
    storage.put_scalar("vild/cls_accuracy", (pred == gt_classes).float().mean().item())
    if fg.any():
        storage.put_scalar(
            "vild/fg_cls_accuracy", (pred[fg] == gt_classes[fg]).float().mean().item()
        )
