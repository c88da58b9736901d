"""BARON's box predictor: region features -> pseudo words -> the frozen teacher text encoder -> cosine
classifier over text embeddings with a learned background (a :class:`ViLDOutputLayers`), plus the
in-bag positional embedding of region boxes."""

from __future__ import annotations

import math

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Instances
from torch import Tensor, nn
from torch.nn import functional as F

from distill.text_encoder import PseudoTextEncoder, load_text_encoder
from distill.vocab import check_teacher_fingerprint

from .vild_predictor import ViLDOutputLayers, ensemble_scores

__all__ = ["BaronOutputLayers", "BoxPositionEmbedding", "load_baron_text_encoder"]


def load_baron_text_encoder(cfg, *, expect_fingerprint: str | None = None) -> PseudoTextEncoder:
    """``MODEL.BARON.TEXT_ENCODER``, checked to come from the teacher of the text embeddings."""
    path = cfg.MODEL.BARON.TEXT_ENCODER
    if not path:
        raise ValueError(
            "MODEL.BARON.TEXT_ENCODER is empty: set it to a distill.text_encoder file, or run "
            "tools/train_net.py, which exports it from MODEL.VILD.TEACHER"
        )
    encoder, fingerprint = load_text_encoder(path)
    check_teacher_fingerprint(
        expect_fingerprint,
        fingerprint,
        what=f"text encoder MODEL.BARON.TEXT_ENCODER ({path})",
        source=f"the text embeddings MODEL.VILD.TEXT_EMBEDDINGS ({cfg.MODEL.VILD.TEXT_EMBEDDINGS})",
        fix="clear MODEL.BARON.TEXT_ENCODER so that tools/train_net.py exports the text tower of "
        "MODEL.VILD.TEACHER, the teacher of the text embeddings",
    )
    return encoder


class BoxPositionEmbedding(nn.Module):
    """Sine embedding of boxes normalized in their bag, projected to one offset per pseudo word.

    ``forward(normed_boxes [R, 4] xyxy in 0..1) -> [R, num_words, word_dim]``: the box as
    (cx, cy, w, h), each coordinate ``* 2 pi`` through ``num_feats`` sines/cosines of geometric
    frequencies, then Linear -> LayerNorm -> Linear.
    """

    def __init__(self, *, num_feats: int, num_words: int, word_dim: int, base: float = 1.2) -> None:
        super().__init__()
        if num_feats % 2:
            raise ValueError(f"MODEL.BARON.POS_EMBED_FEATS must be even, got {num_feats}")
        self.num_words, self.word_dim = num_words, word_dim
        exponents = torch.arange(num_feats).div(2, rounding_mode="floor") - num_feats // 4
        self.register_buffer("frequencies", base ** exponents.float(), persistent=False)
        self.proj = nn.Sequential(
            nn.Linear(4 * num_feats, word_dim),
            nn.LayerNorm(word_dim),
            nn.Linear(word_dim, num_words * word_dim),
        )

    def forward(self, normed_boxes: Tensor) -> Tensor:
        if normed_boxes.dim() != 2 or normed_boxes.shape[1] != 4:
            raise ValueError(f"normed_boxes must be [R, 4], got {tuple(normed_boxes.shape)}")
        xy, wh = (
            (normed_boxes[:, :2] + normed_boxes[:, 2:]) / 2,
            normed_boxes[:, 2:] - normed_boxes[:, :2],
        )
        angles = torch.cat([xy, wh], dim=1)[:, :, None] * (2 * math.pi) * self.frequencies
        feats = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(2)
        return self.proj(feats.flatten(1)).view(-1, self.num_words, self.word_dim)


class BaronOutputLayers(ViLDOutputLayers):
    """:class:`ViLDOutputLayers` whose region embedding is ``text_encoder(pseudo words)``.

    ``projection`` maps box-head features ``[R, F]`` to ``num_words`` words ``[R, W, width]``; in
    training each word is dropped with probability ``word_dropout`` (at least one kept per region);
    the frozen ``text_encoder`` turns them into normalized embeddings ``[R, D]``. Classification,
    vocabulary swapping (:meth:`set_vocabulary`), box regression and inference are ViLD's, so export
    and evaluation treat BARON like ViLD, except the ensemble's scores (:meth:`predict_probs`).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        text_encoder: PseudoTextEncoder,
        num_words: int,
        word_dropout: float = 0.5,
        text_space: str = "projected",
        ensemble_background: bool = True,
        **kwargs,
    ) -> None:
        """``ensemble_background``: BARON-ensemble scoring (see :meth:`predict_probs`); False gives
        ViLD-ensemble's rule (distillation softmax without background).

        ``text_space``: output space of ``text_encoder`` for classification (``"attn12"``:
        ovdet's OV-COCO ``use_attn12_output``, see ``distill.text_encoder``); the bag losses stay
        projected."""
        if not 1 <= num_words <= text_encoder.max_words:
            raise ValueError(
                f"MODEL.BARON.NUM_WORDS must be in [1, {text_encoder.max_words}] for this text "
                f"encoder, got {num_words}"
            )
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"MODEL.BARON.WORD_DROPOUT must be in [0, 1), got {word_dropout}")
        super().__init__(input_shape, projection_dim=num_words * text_encoder.width, **kwargs)
        if text_encoder.output_dim(text_space) != self.embed_dim:
            raise ValueError(
                f"text encoder output size {text_encoder.output_dim(text_space)} ({text_space}) != "
                f"text embeddings size {self.embed_dim} (MODEL.BARON.TEXT_ENCODER / TEXT_SPACE vs "
                f"MODEL.VILD.TEXT_EMBEDDINGS)"
            )
        self.text_space = text_space
        self.num_words, self.word_dim = int(num_words), text_encoder.width
        self.text_encoder = text_encoder
        self.word_dropout = float(word_dropout)
        self.ensemble_background = bool(ensemble_background)

    @classmethod
    def from_config(
        cls,
        cfg,
        input_shape: ShapeSpec,
        *,
        class_embeddings: Tensor,
        class_names,
        seen: Tensor | None = None,
        text_encoder: PseudoTextEncoder,
    ):
        ret = super().from_config(
            cfg, input_shape, class_embeddings=class_embeddings, class_names=class_names, seen=seen
        )
        baron = cfg.MODEL.BARON
        ret.update(
            text_encoder=text_encoder,
            num_words=baron.NUM_WORDS,
            word_dropout=baron.WORD_DROPOUT,
            text_space=baron.TEXT_SPACE,
            background_weight=baron.BG_WEIGHT,
            test_temperature=baron.TEST_TEMPERATURE or None,
            ensemble_background=baron.ENSEMBLE_BACKGROUND,
        )
        return ret

    def words(self, x: Tensor, projection: nn.Module | None = None) -> Tensor:
        """Pseudo words ``[R, W, width]`` of box-head features ``x [R, F]`` (``projection`` default: own)."""
        return (projection or self.projection)(x.flatten(1)).view(-1, self.num_words, self.word_dim)

    def word_mask(self, num_regions: int, device: torch.device) -> Tensor | None:
        """``[R, W]`` bool words kept by word dropout (None outside training / without dropout)."""
        if not self.training or self.word_dropout == 0.0:
            return None
        noise = torch.rand(num_regions, self.num_words, device=device)
        keep = noise >= self.word_dropout
        keep[torch.arange(num_regions, device=device), noise.argmax(dim=1)] = True
        return keep

    def encode_words(self, words: Tensor) -> Tensor:
        """Normalized embeddings ``[R, D]`` of per-region words ``[R, W, width]`` (word dropout in training)."""
        return self.text_encoder(
            words, valid=self.word_mask(words.shape[0], words.device), space=self.text_space
        )

    def embed(self, x: Tensor) -> Tensor:
        return self.encode_words(self.words(x))

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

        With ``image_embeddings [R, D]`` (the ensemble's distillation branch) and
        ``ensemble_background``, BARON's rule (wusize/ovdet@d74a20c ``ovdet/models/roi_heads/
        baron_bbox_heads/ensemble_bbox_head.py``): both branches' softmax include the background
        (the distillation branch scores with the learned background embedding and the test
        temperature too), and :func:`ensemble_scores` weights every column, the background one as a
        seen class: ``p_text^w * p_img^(1 - w)``. Scores are not renormalized; the detections use
        the ``C`` class columns only. Otherwise ViLD's rule (:class:`ViLDOutputLayers`).
        """
        if image_embeddings is None or not self.ensemble_background:
            return super().predict_probs(
                predictions,
                proposals,
                image_embeddings=image_embeddings,
                classifier=classifier,
                seen=seen,
            )
        if seen is None and classifier is not None:
            raise ValueError(
                "BARON-ensemble scoring with a given classifier needs seen [K] "
                "(bool, class trained on)"
            )
        seen = self.seen if seen is None else seen.bool()
        text = F.softmax(predictions[0], dim=-1)
        image = F.softmax(self.class_logits(image_embeddings, classifier=classifier), dim=-1)
        with_background = torch.cat([seen, seen.new_ones(1)])
        probs = ensemble_scores(text, image, with_background, weight=self.ensemble_weight)
        if len(proposals) == 1:  # no split: traced graphs keep the number of proposals dynamic
            return (probs,)
        return probs.split([len(p) for p in proposals])
