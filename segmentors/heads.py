"""Decode heads whose classifier is a fixed text-embedding matrix (MaskCLIP+ students, LSeg).

``TextClassifierMixin`` turns any MMSeg decode head into an open-vocabulary one whose classifier is a
fixed, L2-normalized text-embedding matrix read from a classifier file
(``distill.vocab.ClassifierFile``). Two ways of scoring the head's features ``feat [B, channels, h, w]``
(``logits=``):

* ``"dot"`` (MaskCLIP+, chongzhou96/MaskCLIP@245d31f ``mmseg/models/decode_heads/maskclip_plus_head.py``,
  ``norm_feat=False``): the head's features ARE the pixel embeddings (``channels`` must equal the text
  dimension, no projection) and the logits are the unnormalized dot product, no temperature::

      logits[b, n, y, x] = feat[b, :, y, x] . text[n]

* ``"cosine"`` (LSeg, ``modules/models/lseg_net.py``; ovdistill's former MaskCLIP+ head): a 1x1
  projection ``conv_seg: channels -> D``, L2-normalized pixels, divided by ``temperature``::

      logits[b, n, y, x] = (1 / temperature) * normalize(conv_seg(feat))[b, :, y, x] . text[n]

With ``learned_background=True`` a learnable background embedding (normalized when used, as the
official ``bg_embeddings``) is prepended (label 0), as in MaskCLIP+ on Context-60 and 21-class VOC.
``train_excluded_classes`` drops classes from the training label set (their logits are masked out of
the softmax and their pixels ignored), the inductive zero-shot setting for LSeg.

The text embeddings and a hash of their class names are saved with checkpoints. When a checkpoint is
loaded, the head keeps the embeddings of its file (so a checkpoint can be evaluated on another
vocabulary), but refuses a checkpoint that was trained with *different* embeddings for the *same*
class names (e.g. the teacher changed since training): that would be a silently wrong evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads.fcn_head import FCNHead
from mmseg.models.decode_heads.sep_aspp_head import DepthwiseSeparableASPPHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

from distill.utils import sha256_json
from distill.vocab import ClassifierFile, dense_cosine_logits

from .utils import ignore_labels

__all__ = [
    "TextClassifierMixin",
    "TextFCNHead",
    "TextDeepLabV2Head",
    "TextDepthwiseSeparableASPPHead",
    "LSegHead",
    "LOGIT_MODES",
]

_MASKED_LOGIT = -1e4
LOGIT_MODES = ("dot", "cosine")


class TextClassifierMixin:
    """Mixin for ``BaseDecodeHead`` subclasses (put it first in the bases).

    Args:
        text_embeddings: path of the classifier file (``distill.vocab.ClassifierFile``).
        class_names: expected names in the file (checked; the tools also use them to create the file).
        learned_background: prepend a learned background embedding as label 0.
        logits: "dot" (MaskCLIP+: ``feat . text``; ``channels`` defaults to, and must equal, the
            text dimension) or "cosine" (``normalize(conv_seg(feat)) . text / temperature``); see the
            module docstring.
        temperature: "cosine" only (default 0.07, LSeg's fixed ``logit_scale``); "dot" has none.
        train_excluded_classes: labels left out of training (masked logits, ignored pixels).
        **kwargs: the decode head's own arguments; ``num_classes`` defaults to the file's classes
            (+1 with the learned background) and must equal that when given.
    """

    def __init__(
        self,
        *,
        text_embeddings: str,
        class_names: Sequence[str | Sequence[str]] | None = None,
        learned_background: bool = False,
        logits: str = "cosine",
        temperature: float | None = None,
        train_excluded_classes: Sequence[int] = (),
        **kwargs,
    ) -> None:
        loaded = ClassifierFile.load(text_embeddings)
        if class_names is not None:
            loaded.check_names(class_names)
        num_classes = loaded.embeddings.shape[0] + int(learned_background)
        given = kwargs.setdefault("num_classes", num_classes)
        if given != num_classes:
            raise ValueError(
                f"num_classes={given} but text-embedding file {text_embeddings} holds "
                f"{loaded.embeddings.shape[0]} classes (+{int(learned_background)} learned background)"
            )
        if logits not in LOGIT_MODES:
            raise ValueError(f"logits must be one of {LOGIT_MODES}, got {logits!r}")
        if logits == "dot" and temperature is not None:
            raise ValueError(
                "logits='dot' (MaskCLIP+'s unnormalized dot product) has no temperature; "
                "remove temperature or use logits='cosine'"
            )
        temperature = 0.07 if temperature is None else float(temperature)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        embed_dim = loaded.embeddings.shape[1]
        if logits == "dot":
            kwargs.setdefault("channels", embed_dim)  # official: channels = text_channels
        super().__init__(**kwargs)
        bad = [c for c in train_excluded_classes if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(f"train_excluded_classes {bad} outside [0, {num_classes})")
        self.text_embeddings_path = str(text_embeddings)
        self.logits = logits
        self.temperature = temperature if logits == "cosine" else None
        self.train_excluded_classes = tuple(int(c) for c in train_excluded_classes)
        if logits == "dot":
            if self.channels != embed_dim:
                raise ValueError(
                    f"logits='dot': the head's channels ({self.channels}) must equal the text "
                    f"dimension of {text_embeddings} ({embed_dim}); the features are the pixel "
                    f"embeddings (official MaskCLIP+ sets channels = text_channels)"
                )
            # No projection: MaskClipPlusHead deletes conv_seg and scores the features directly.
            self.conv_seg = nn.Identity()
        else:
            self.conv_seg = nn.Conv2d(self.channels, embed_dim, kernel_size=1)
        self.register_buffer("text_embeddings", loaded.embeddings.clone())
        names_hash = int(sha256_json(loaded.entries)[:15], 16)
        self.register_buffer("text_names_hash", torch.tensor(names_hash))
        # Official init: bg_embeddings = nn.Parameter(torch.randn(1, text_channels)) (normalized in
        # use, so only the step size of the optimizer on its direction depends on this scale).
        self.background_embedding = (
            nn.Parameter(torch.randn(1, embed_dim)) if learned_background else None
        )
        self.register_load_state_dict_pre_hook(_keep_file_text_embeddings)

    @property
    def embed_dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    def class_embeddings(self) -> Tensor:
        """``[num_classes, D]`` normalized classifier (learned background first, if any)."""
        if self.background_embedding is None:
            return self.text_embeddings
        return torch.cat(
            [F.normalize(self.background_embedding, dim=1), self.text_embeddings], dim=0
        )

    def pixel_embeddings(self, feat: Tensor) -> Tensor:
        """``[B, channels, h, w]`` head features -> ``[B, D, h, w]`` pixel embeddings: after dropout,
        the features themselves ("dot") or their L2-normalized 1x1 projection ("cosine")."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        if self.logits == "dot":
            return feat
        return F.normalize(self.conv_seg(feat), dim=1)

    def cls_seg(self, feat: Tensor) -> Tensor:
        """``[B, channels, h, w]`` -> ``[B, num_classes, h, w]`` logits (see the module docstring)."""
        pixels = self.pixel_embeddings(feat)
        classifier = self.class_embeddings().to(pixels.dtype)
        if self.logits == "dot":
            return torch.einsum("bdhw,nd->bnhw", pixels, classifier)
        return dense_cosine_logits(pixels, classifier, temperature=self.temperature)

    def loss_by_feat(self, seg_logits: Tensor, batch_data_samples: list) -> dict:
        if self.train_excluded_classes:
            mask = torch.zeros(seg_logits.shape[1], dtype=torch.bool, device=seg_logits.device)
            mask[list(self.train_excluded_classes)] = True
            seg_logits = seg_logits.masked_fill(mask[None, :, None, None], _MASKED_LOGIT)
            batch_data_samples = ignore_labels(
                batch_data_samples, self.train_excluded_classes, ignore_index=self.ignore_index
            )
        return super().loss_by_feat(seg_logits, batch_data_samples)


def _keep_file_text_embeddings(
    module: TextClassifierMixin, state_dict: dict, prefix: str, *args
) -> None:
    """Load-state-dict pre-hook: keep the file's text embeddings; refuse same-names-other-embeddings."""
    emb_key, hash_key = prefix + "text_embeddings", prefix + "text_names_hash"
    if emb_key not in state_dict:
        return
    stored, current = state_dict[emb_key], module.text_embeddings
    same_names = hash_key in state_dict and int(state_dict[hash_key]) == int(module.text_names_hash)
    if same_names and (
        stored.shape != current.shape or not torch.allclose(stored.to(current), current, atol=1e-4)
    ):
        raise ValueError(
            f"the checkpoint was trained with other text embeddings for the same classes than "
            f"{module.text_embeddings_path} (was it recomputed with another teacher?); restore the "
            f"training run's text-embedding file or retrain"
        )
    state_dict[emb_key] = current.detach().clone()
    state_dict[hash_key] = module.text_names_hash.detach().clone()


@MODELS.register_module()
class TextFCNHead(TextClassifierMixin, FCNHead):
    """MMSeg's ``FCNHead`` with the text-embedding classifier (any backbone, smallest student)."""


@MODELS.register_module()
class TextDepthwiseSeparableASPPHead(TextClassifierMixin, DepthwiseSeparableASPPHead):
    """DeepLabV3+ (MMSeg's ``DepthwiseSeparableASPPHead``) with the text-embedding classifier (the
    MaskCLIP+ Context student: official ``decode_module_cfg=DepthwiseSeparableASPPHead``).
    ``logits`` defaults to "dot" and ``dropout_ratio`` to 0, the official MaskCLIP+ classifier."""

    def __init__(self, *, logits: str = "dot", dropout_ratio: float = 0.0, **kwargs) -> None:
        super().__init__(logits=logits, dropout_ratio=dropout_ratio, **kwargs)


@MODELS.register_module()
class TextDeepLabV2Head(TextClassifierMixin, BaseDecodeHead):
    """DeepLabV2 (MaskCLIP's ``ASPPHeadV2``, chongzhou96/MaskCLIP@245d31f
    ``mmseg/models/decode_heads/aspp_headv2.py``): parallel atrous ``ConvModule`` branches (conv +
    ``norm_cfg`` + ``act_cfg``; 3x3, or 1x1 where the dilation is 1) whose outputs are summed, then
    the text-embedding classifier (the MaskCLIP+ VOC / COCO-Stuff student head). ``logits`` defaults
    to "dot" and ``dropout_ratio`` to 0, the official MaskCLIP+ classifier.

    Args:
        dilations: dilation rate of each branch.
        **kwargs: ``TextClassifierMixin`` and ``BaseDecodeHead`` arguments (``norm_cfg`` / ``act_cfg``
            apply to every branch; the official configs use SyncBN + ReLU).
    """

    def __init__(
        self,
        *,
        dilations: Sequence[int] = (6, 12, 18, 24),
        logits: str = "dot",
        dropout_ratio: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(logits=logits, dropout_ratio=dropout_ratio, **kwargs)
        if not dilations:
            raise ValueError("dilations must not be empty")
        self.dilations = tuple(int(d) for d in dilations)
        self.branches = nn.ModuleList(
            ConvModule(
                self.in_channels,
                self.channels,
                1 if d == 1 else 3,
                padding=0 if d == 1 else d,
                dilation=d,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg,
            )
            for d in self.dilations
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)
        feat = torch.stack([branch(x) for branch in self.branches]).sum(dim=0)
        return self.cls_seg(feat)


@MODELS.register_module()
class LSegHead(TextClassifierMixin, BaseDecodeHead):
    """LSeg-style dense text-embedding head for any multi-level MMSeg backbone.

    Every selected level gets a 1x1 lateral conv to ``channels``; coarser levels are upsampled and
    added top-down onto the finest one, then ``num_convs`` 3x3 convs fuse the result, which is
    projected to the text space: ``logits = (1 / 0.07) * normalize(pixel) . text`` (``logits="cosine"``;
    LSeg's ``logit_scale`` is ``nn.Parameter(log(1 / 0.07)).exp()``, a fixed tensor, not trained).

    Use ``input_transform='multiple_select'`` with lists ``in_channels`` / ``in_index`` (a single
    level also works with ints).
    """

    def __init__(self, *, num_convs: int = 2, temperature: float = 0.07, **kwargs) -> None:
        super().__init__(temperature=temperature, **kwargs)
        levels = (
            self.in_channels if isinstance(self.in_channels, (list, tuple)) else [self.in_channels]
        )
        self.laterals = nn.ModuleList(
            ConvModule(
                c,
                self.channels,
                1,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg,
            )
            for c in levels
        )
        self.fuse = nn.Sequential(
            *[
                ConvModule(
                    self.channels,
                    self.channels,
                    3,
                    padding=1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg,
                )
                for _ in range(num_convs)
            ]
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)
        levels = list(x) if isinstance(x, (list, tuple)) else [x]
        feats = [lateral(level) for lateral, level in zip(self.laterals, levels)]
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[-2] * feats[i].shape[-1])
        out = feats[order[0]]  # coarsest
        for i in order[1:]:
            out = feats[i] + resize(
                out, size=feats[i].shape[2:], mode="bilinear", align_corners=self.align_corners
            )
        return self.cls_seg(self.fuse(out))
