"""``ExportableViLD``: one-image ViLD / BARON inference as a traceable module, the vocabulary an
input (or a baked buffer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from detectron2.modeling.postprocessing import detector_postprocess
from torch import Tensor, nn
from torch.nn import functional as F

from distill.vocab import normalize_name

from ..modeling.roi_heads import ViLDROIHeads

__all__ = ["ExportableViLD", "baked_seen", "check_embeddings"]


class ExportableViLD(nn.Module):
    """One-image ViLD / BARON inference as a traceable module: the eager model's own pieces, run
    with the vocabulary given to ``forward``.

    ``forward(image [3, H, W] float (0-255, ``INPUT.FORMAT`` channel order, any size, after the test
    resize), text_embeddings [K, D])`` returns ``boxes [N, 4]`` (xyxy, in the image's pixels),
    ``scores [N]`` and ``classes [N]`` (int64 indices into the vocabulary), N <=
    ``TEST.DETECTIONS_PER_IMAGE``, sorted by score. It is ``GeneralizedRCNN.inference`` for one
    image: ``preprocess_image``, backbone, RPN proposals, :meth:`ViLDROIHeads.box_inference` with
    the given classifier, ``detector_postprocess``. With ``text_embeddings`` given at construction
    (``[K, D]``) they are baked in as a buffer and ``forward`` takes the image only. Embeddings are
    L2-normalized inside, as ``set_vocabulary`` does.

    ViLD-ensemble models weigh their two branches per class by ``seen [K]`` (bool: class trained on):
    a third input ``forward(image, text_embeddings, seen)``, or baked with the embeddings (``seen``
    given here, default: names of the training vocabulary, as ``set_vocabulary``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        text_embeddings: Tensor | None = None,
        names: Sequence[str] | None = None,
        seen: Tensor | Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        heads = getattr(model, "roi_heads", None)
        if not isinstance(heads, ViLDROIHeads):
            raise TypeError(
                f"ExportableViLD needs a ViLDRCNN or BaronRCNN (ViLDROIHeads or a subclass), got "
                f"roi_heads {type(heads).__name__}"
            )
        if model.proposal_generator is None:
            raise ValueError("ExportableViLD needs a proposal generator (MODEL.PROPOSAL_GENERATOR)")
        self.model = model.eval()
        self.embed_dim = int(heads.box_predictor.embed_dim)
        self.baked = text_embeddings is not None
        self.ensemble = heads.image_head is not None
        if text_embeddings is not None:
            check_embeddings(text_embeddings, self.embed_dim, source="baked vocabulary")
            self.register_buffer(
                "text_embeddings", F.normalize(text_embeddings.detach().float(), dim=-1)
            )
            if self.ensemble:
                self.register_buffer(
                    "seen", baked_seen(heads.box_predictor, text_embeddings.shape[0], names, seen)
                )
        self.eval()  # exporters restore the wrapper's mode afterwards: it must be eval, not nn.Module's default

    @property
    def input_names(self) -> list[str]:
        """Graph inputs: ``image`` plus, unless baked, ``text_embeddings`` (and ``seen`` for ViLD-ensemble)."""
        return (
            ["image"]
            if self.baked
            else ["image", "text_embeddings"] + (["seen"] if self.ensemble else [])
        )

    def forward(
        self, image: Tensor, text_embeddings: Tensor | None = None, seen: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        if text_embeddings is None:
            if not self.baked:
                raise ValueError(
                    "this module takes the vocabulary as input: forward(image, text_embeddings)"
                )
            classifier = self.text_embeddings
            seen = self.seen if self.ensemble else None
        else:
            classifier = F.normalize(text_embeddings.float(), dim=-1)
            if self.ensemble and seen is None:
                raise ValueError(
                    "a ViLD-ensemble module needs seen [K] (bool): forward(image, text_embeddings, seen)"
                )
        height, width = image.shape[-2], image.shape[-1]
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        instances = model.roi_heads.box_inference(
            features, proposals, classifier=classifier, seen=seen
        )[0]
        # clip + drop empty boxes, as GeneralizedRCNN does
        instances = detector_postprocess(instances, height, width)
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def baked_seen(
    predictor: nn.Module,
    num_classes: int,
    names: Sequence[str] | None,
    seen: Tensor | Sequence[bool] | None,
) -> Tensor:
    """``seen [K]`` bool for a baked ViLD-ensemble vocabulary: given, or names in the training vocabulary."""
    if seen is None:
        if names is None:
            raise ValueError(
                "a baked ViLD-ensemble vocabulary needs names (or seen) to weigh its two branches"
            )
        seen = [normalize_name(n) in predictor.training_names for n in names]
    seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
    if seen.numel() != num_classes:
        raise ValueError(
            f"seen must have {num_classes} entries (one per class), got {seen.numel()}"
        )
    return seen


def check_embeddings(embeddings: Any, embed_dim: int, *, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``embeddings`` is a finite ``[K >= 1, embed_dim]`` tensor."""
    shape = list(getattr(embeddings, "shape", []))
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(
            f"{source}: vocabulary embeddings must be [K >= 1, {embed_dim}], got shape {shape}"
        )
    if shape[1] != embed_dim:
        raise ValueError(
            f"{source}: vocabulary embedding size {shape[1]} does not match the model's text "
            f"embedding size {embed_dim} (embeddings must come from the model's teacher)"
        )
    if not bool(torch.isfinite(torch.as_tensor(embeddings).detach().float()).all()):
        raise ValueError(f"{source}: vocabulary embeddings contain non-finite values")
