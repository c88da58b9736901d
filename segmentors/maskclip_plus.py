"""MaskCLIP+: an MMSeg student trained on the frozen MaskCLIP teacher's pseudo-labels, then on its own.

Target rewriting (``pseudo_targets``) is a pure function; ``MaskCLIPPlusSegmentor`` applies it per batch
before the decode head's loss:

* transductive (default): pixels whose ground truth is a seen class keep it; pixels whose ground truth is
  an unseen class are suppressed and relabelled with the argmax over the *unseen* classes only: the
  teacher's (MaskCLIP dense scores) before ``self_training_start`` iterations, the student's own after.
* annotation-free (``annotation_free=True``): ground truth is never read; every image pixel takes the
  argmax over *all* classes (teacher, then self-training), batch padding stays ignored.

With ``confidence_threshold > 0`` a relabelled pixel whose softmax probability over the candidate classes
(the teacher's scores x 100, MaskCLIP's softmax temperature; the student's logits as they are) is below
the threshold is ignored instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import add_prefix
from torch import Tensor

from distill.teachers import TeacherHandle, TeacherSpec
from distill.vocab import canonical_class_entries

from .teacher import dense_pixel_logits
from .utils import image_region_mask, stack_gt, teacher_images, with_gt

__all__ = ["pseudo_targets", "MaskCLIPPlusSegmentor"]

_TEACHER_SOFTMAX_SCALE = 100.0  # MaskCLIP's softmax(100 * cosine)


def pseudo_targets(
    gt: Tensor,
    scores: Tensor,
    *,
    candidates: Sequence[int],
    relabel: Tensor,
    confidence_threshold: float = 0.0,
    ignore_index: int = 255,
) -> Tensor:
    """Rewrite ``gt`` at the ``relabel`` pixels with the argmax of ``scores`` over ``candidates``.

    Args:
        gt: ``[B, H, W]`` integer labels.
        scores: ``[B, len(candidates), H, W]`` scores of the candidate classes, in ``candidates`` order.
        candidates: label ids the relabelled pixels may take (unseen classes, or all in annotation-free).
        relabel: ``[B, H, W]`` bool, the pixels to rewrite.
        confidence_threshold: relabelled pixels whose ``softmax(scores)`` max is below it get ``ignore_index``.

    Returns:
        ``[B, H, W]`` long targets; pixels outside ``relabel`` are ``gt`` unchanged.
    """
    if (
        scores.ndim != 4
        or scores.shape[1] != len(candidates)
        or scores.shape[0] != gt.shape[0]
        or scores.shape[2:] != gt.shape[1:]
    ):
        raise ValueError(
            f"scores must be [B, {len(candidates)}, H, W] matching gt {tuple(gt.shape)}, "
            f"got {tuple(scores.shape)}"
        )
    if relabel.shape != gt.shape or relabel.dtype != torch.bool:
        raise ValueError(f"relabel must be a bool tensor of shape {tuple(gt.shape)}")
    ids = torch.as_tensor(list(candidates), device=gt.device, dtype=torch.long)
    best = scores.argmax(dim=1)
    labels = ids[best]
    if confidence_threshold > 0:
        confidence = F.softmax(scores.float(), dim=1).amax(dim=1)
        labels = labels.masked_fill(confidence < confidence_threshold, ignore_index)
    return torch.where(relabel, labels, gt.long())


@MODELS.register_module()
class MaskCLIPPlusSegmentor(EncoderDecoder):
    """An ``EncoderDecoder`` student (any backbone / decode head, typically a text-classifier head) with
    a frozen MaskCLIP teacher that rewrites the training targets (see the module docstring).

    Args:
        teacher: teacher config (``dict(type='clip', model_name=..., pretrained=..., model_config=...)``);
            built lazily on the batch's device, never saved in checkpoints.
        teacher_class_names: one text name per label (label order); the teacher classifies with these.
        unseen_classes: unseen label ids (transductive); ignored in annotation-free mode.
        templates: teacher prompt templates ("maskclip" = its 85 templates).
        self_training_start: iteration from which the student's own predictions replace the teacher's
            (``None``: never). Counted by the ``train_iter`` buffer, which checkpoints keep (resume-safe).
        confidence_threshold: see the module docstring (0 disables).
        annotation_free: relabel every pixel over all classes, ignoring the ground truth.
        key_smoothing / prompt_denoise / key_norm: MaskCLIP refinements of the teacher's scores.
        **kwargs: ``EncoderDecoder`` arguments (backbone, decode_head, data_preprocessor with bgr_to_rgb, ...).
    """

    def __init__(
        self,
        *,
        teacher: Mapping,
        teacher_class_names: Sequence[str | Sequence[str]],
        unseen_classes: Sequence[int] = (),
        templates: str | Sequence[str] = "maskclip",
        self_training_start: int | None = None,
        confidence_threshold: float = 0.0,
        annotation_free: bool = False,
        key_smoothing: float | None = None,
        prompt_denoise: float | None = None,
        key_norm: str = "spatial",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.teacher_class_names = canonical_class_entries(
            teacher_class_names, field="MaskCLIPPlusSegmentor teacher_class_names"
        )
        if len(self.teacher_class_names) != self.num_classes:
            raise ValueError(
                f"teacher_class_names has {len(self.teacher_class_names)} names but the decode head "
                f"predicts {self.num_classes} classes"
            )
        unseen = sorted({int(c) for c in unseen_classes})
        if any(not 0 <= c < self.num_classes for c in unseen):
            raise ValueError(f"unseen_classes {unseen} outside [0, {self.num_classes})")
        if not annotation_free and not unseen:
            raise ValueError(
                "transductive MaskCLIP+ needs unseen_classes (or set annotation_free=True)"
            )
        if not 0.0 <= confidence_threshold < 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1), got {confidence_threshold}")
        self.annotation_free = bool(annotation_free)
        self.candidates = list(range(self.num_classes)) if annotation_free else unseen
        self.templates = templates if isinstance(templates, str) else list(templates)
        self.self_training_start = self_training_start
        self.confidence_threshold = float(confidence_threshold)
        self.refine = dict(
            key_smoothing=key_smoothing, prompt_denoise=prompt_denoise, key_norm=key_norm
        )
        self.ignore_index = int(getattr(self.decode_head, "ignore_index", 255))
        spec = TeacherSpec.from_mapping(teacher, origin="MaskCLIPPlusSegmentor teacher")
        self.teacher = TeacherHandle(spec)
        self._classifiers: dict[str, Tensor] = {}
        self.register_buffer("train_iter", torch.zeros((), dtype=torch.long))

    @property
    def self_training(self) -> bool:
        """Whether the current iteration labels with the student's own predictions."""
        return (
            self.self_training_start is not None
            and int(self.train_iter) >= self.self_training_start
        )

    def teacher_classifier(self, device: torch.device) -> Tensor:
        """``[len(candidates), D]`` teacher text classifier of the candidate classes."""
        key = str(device)
        if key not in self._classifiers:
            names = [self.teacher_class_names[c] for c in self.candidates]
            self._classifiers[key] = self.teacher.get(device).text_classifier(
                names, templates=self.templates
            )
        return self._classifiers[key]

    @torch.no_grad()
    def teacher_scores(self, inputs: Tensor) -> Tensor:
        """``[B, len(candidates), H, W]`` MaskCLIP scores of the candidate classes (x100, softmax scale)."""
        teacher = self.teacher.get(inputs.device)
        scores = dense_pixel_logits(
            teacher,
            teacher_images(inputs, self.data_preprocessor),
            self.teacher_classifier(inputs.device),
            **self.refine,
        )
        return scores * _TEACHER_SOFTMAX_SCALE

    def relabel_mask(self, gt: Tensor, data_samples: Sequence[SegDataSample]) -> Tensor:
        """``[B, H, W]`` bool: pixels whose target comes from the teacher / the student."""
        if self.annotation_free:
            return image_region_mask(data_samples, tuple(gt.shape[1:]), gt.device)
        return torch.isin(gt, torch.as_tensor(self.candidates, device=gt.device))

    @torch.no_grad()
    def compute_targets(
        self, inputs: Tensor, seg_logits: Tensor, data_samples: Sequence[SegDataSample]
    ) -> Tensor:
        """``[B, H, W]`` training targets of the batch (see the module docstring).

        Args:
            inputs: ``[B, 3, H, W]`` preprocessed images (the teacher sees them de-normalized).
            seg_logits: ``[B, C, h, w]`` the student's logits of this batch (used once self-training).
            data_samples: the batch's samples with ``gt_sem_seg``.
        """
        gt = stack_gt(data_samples)
        relabel = self.relabel_mask(gt, data_samples)
        if not bool(relabel.any()):
            return gt
        if self.self_training:
            scores = resize(
                seg_logits.detach().float(),
                size=gt.shape[1:],
                mode="bilinear",
                align_corners=self.align_corners,
            )[:, self.candidates]
        else:
            scores = self.teacher_scores(inputs)
        return pseudo_targets(
            gt,
            scores,
            candidates=self.candidates,
            relabel=relabel,
            confidence_threshold=self.confidence_threshold,
            ignore_index=self.ignore_index,
        )

    def loss(self, inputs: Tensor, data_samples: list[SegDataSample]) -> dict:
        if (
            self.self_training_start is not None
            and int(self.train_iter) == self.self_training_start
        ):
            print_log(
                f"MaskCLIP+: switching to self-training at iteration {int(self.train_iter)}",
                logger="current",
            )
        x = self.extract_feat(inputs)
        seg_logits = self.decode_head.forward(x)
        samples = with_gt(data_samples, self.compute_targets(inputs, seg_logits, data_samples))
        self.train_iter += 1
        losses = add_prefix(self.decode_head.loss_by_feat(seg_logits, samples), "decode")
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, samples))
        return losses
