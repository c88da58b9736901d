"""MaskCLIP: training-free zero-shot segmentation with the teacher's dense path, as an MMSeg model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from distill.teachers import TeacherHandle, TeacherSpec
from distill.vocab import canonical_class_entries

from .teacher import dense_pixel_logits
from .utils import slide_inference, teacher_images

__all__ = ["MaskCLIPSegmentor"]


@MODELS.register_module()
class MaskCLIPSegmentor(BaseSegmentor):
    """MaskCLIP (Zhou et al., 2022) on a ``distill.teachers`` CLIP teacher: per-pixel cosine between the
    dense image embeddings (ViT value path / ResNet attention-pool as 1x1 convs) and prompt-ensembled
    class text embeddings. Test only: ``loss`` raises.

    Args:
        teacher: teacher config (``dict(type='clip', model_name=..., pretrained=..., model_config=...)``).
        class_names: one text name (or synonym list) per label, in label order (e.g. "background" first).
        templates: prompt-template set ("maskclip": its 85 templates) or a list of templates.
        key_smoothing: MaskCLIP's ``ks_thresh`` (1.0 in the paper) or ``None`` to disable.
        prompt_denoise: MaskCLIP's ``pd_thresh`` (0.5 in the paper) or ``None`` to disable.
        key_norm: key normalization for key smoothing: "spatial" (official) or "channel" (see
            ``distill.teachers.maskclip.key_smoothing``).
        test_cfg: ``dict(mode='whole')`` or ``dict(mode='slide', crop_size=(h, w), stride=(h, w))``.
        data_preprocessor: an MMSeg ``SegDataPreProcessor`` config with ``bgr_to_rgb=True``.
    """

    def __init__(
        self,
        *,
        teacher: Mapping,
        class_names: Sequence[str | Sequence[str]],
        templates: str | Sequence[str] = "maskclip",
        key_smoothing: float | None = None,
        prompt_denoise: float | None = None,
        key_norm: str = "spatial",
        test_cfg: Mapping | None = None,
        data_preprocessor: Mapping | None = None,
        init_cfg: Mapping | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.class_names = canonical_class_entries(
            class_names, field="MaskCLIPSegmentor class_names"
        )
        if not self.class_names:
            raise ValueError("MaskCLIPSegmentor needs at least one class name")
        self.templates = templates if isinstance(templates, str) else list(templates)
        self.key_smoothing = key_smoothing
        self.prompt_denoise = prompt_denoise
        self.key_norm = key_norm
        self.test_cfg = dict(test_cfg or {"mode": "whole"})
        if self.test_cfg.get("mode", "whole") not in ("whole", "slide"):
            raise ValueError(
                f"test_cfg.mode must be 'whole' or 'slide', got {self.test_cfg.get('mode')!r}"
            )
        self.num_classes = self.out_channels = len(self.class_names)
        self.align_corners = False
        spec = TeacherSpec.from_mapping(teacher, origin="MaskCLIPSegmentor teacher")
        self.teacher = TeacherHandle(spec)
        self._classifiers: dict[str, Tensor] = {}

    def classifier(self, device: torch.device) -> Tensor:
        """``[num_classes, D]`` text classifier on ``device`` (computed once per device, disk-cached)."""
        key = str(device)
        if key not in self._classifiers:
            teacher = self.teacher.get(device)
            self._classifiers[key] = teacher.text_classifier(
                self.class_names, templates=self.templates
            )
        return self._classifiers[key]

    # -- BaseSegmentor API ---------------------------------------------------------------------------
    def extract_feat(self, inputs: Tensor) -> Tensor:
        """``[B, D, h, w]`` dense (not normalized) teacher embeddings of the batch."""
        teacher = self.teacher.get(inputs.device)
        return teacher.dense_embeddings(teacher_images(inputs, self.data_preprocessor))

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict] | None = None) -> Tensor:
        """``[B, num_classes, H, W]`` MaskCLIP scores at input resolution."""
        teacher = self.teacher.get(inputs.device)
        return dense_pixel_logits(
            teacher,
            teacher_images(inputs, self.data_preprocessor),
            self.classifier(inputs.device),
            key_smoothing=self.key_smoothing,
            prompt_denoise=self.prompt_denoise,
            key_norm=self.key_norm,
        )

    def inference(self, inputs: Tensor, batch_img_metas: list[dict] | None = None) -> Tensor:
        if self.test_cfg.get("mode", "whole") == "slide":
            return slide_inference(
                lambda crop: self.encode_decode(crop),
                inputs,
                num_classes=self.num_classes,
                crop_size=tuple(self.test_cfg["crop_size"]),
                stride=tuple(self.test_cfg["stride"]),
            )
        return self.encode_decode(inputs)

    def loss(self, inputs: Tensor, data_samples: list[SegDataSample]) -> dict:
        raise RuntimeError(
            "MaskCLIPSegmentor is training-free: evaluate it with tools/test_seg.py (no checkpoint "
            "needed); train a MaskCLIP+ student (MaskCLIPPlusSegmentor) instead"
        )

    @torch.no_grad()
    def predict(
        self, inputs: Tensor, data_samples: list[SegDataSample] | None = None
    ) -> list[SegDataSample]:
        return self.postprocess_result(self.inference(inputs), data_samples)

    def _forward(self, inputs: Tensor, data_samples: list[SegDataSample] | None = None) -> Tensor:
        return self.encode_decode(inputs)
