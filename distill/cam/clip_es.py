"""CLIP-ES per image: softmax-GradCAM -> class-aware attention refinement -> pseudo-mask + confidence.

>>> es = ClipES(teacher, ["cat", "dog"], config=ClipESConfig())
>>> out = es.pseudo_label(image_uint8_chw, [1], image_id="2007_000032")   # the image is labelled "dog"
>>> out.label      # [H, W] int64: 0 background, c + 1 for class index c
>>> out.confidence # [H, W] float32 in [0, 1];  out.mask: label with 255 where confidence < threshold

ResNet teachers get softmax-GradCAM on the attention-pool input (``ClipESConfig(refine=False)``); the
class-aware attention refinement needs a ViT's patch attention and raises ``NotImplementedError`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distill.cam.affinity import class_aware_affinity, refine_cams
from distill.cam.crf import (
    CRF_INPUTS,
    CrfParams,
    CrfUnavailableError,
    crf_available,
    crf_image,
    dense_crf,
)
from distill.cam.gradcam import cam_input_size, softmax_gradcam
from distill.cam.labels import VOC_BACKGROUND_PROMPTS
from distill.cam.pseudo import (
    background_scores,
    ignore_low_confidence,
    label_and_confidence,
    normalize_scores,
)
from distill.teachers.clip import ClipTeacher
from distill.teachers.maskclip import dense_kind, dense_stride

__all__ = ["ClipESConfig", "ClipES", "ImageCams", "PseudoLabel"]


@dataclass(frozen=True)
class ClipESConfig:
    """CLIP-ES options (defaults: the official VOC recipe).

    templates: prompt templates (CLIP-ES: "a clean origami {}.").
    background: background class prompts appended to every image's softmax (CLIP-ES VOC: 25).
    scale: input resize factor before rounding each side up to a multiple of the stride.
    refine: class-aware attention refinement (CAA; ViT only).
    attention_layers: attention maps of the last ``n`` blocks are averaged (8).
    pos_embed_mode: interpolation of the positional embedding to the input grid: "bilinear"
        (CLIP-ES ``clip/model.py``) or "bicubic" (ovdistill before the recipe audit).
    sinkhorn_iters / affinity_power: Sinkhorn passes after the first (2) and the affinity power (2).
    box_threshold: CAM threshold (relative to its max) for the CAA box mask (0.4).
    bg_power: background score ``(1 - max cam) ** bg_power`` (1).
    crf / crf_params: DenseCRF refinement of the scores (needs ``pydensecrf2``).
    crf_input: image of the CRF's bilateral term (:func:`distill.cam.crf.crf_image`):
        ``"official_wrapped"`` (CLIP-ES: mean-subtracted BGR wrapped to uint8) or ``"rgb"``.
    confidence_threshold: pixels below it are 255 in training masks (CLIP-ES: 0.95 with CRF).
    logit_scale: cosine multiplier in the softmax (default: the teacher's ``exp(logit_scale)``).
    ignore_index: label of low-confidence pixels.
    """

    templates: tuple[str, ...] = ("a clean origami {}.",)
    background: tuple[str, ...] = VOC_BACKGROUND_PROMPTS
    scale: float = 1.0
    refine: bool = True
    attention_layers: int = 8
    pos_embed_mode: str = "bilinear"
    sinkhorn_iters: int = 2
    affinity_power: int = 2
    box_threshold: float = 0.4
    bg_power: float = 1.0
    crf: bool = False
    crf_params: CrfParams = field(default_factory=CrfParams)
    crf_input: str = "official_wrapped"
    confidence_threshold: float = 0.95
    logit_scale: float | None = None
    ignore_index: int = 255

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "background", tuple(self.background))
        if isinstance(self.crf_params, dict):
            object.__setattr__(self, "crf_params", CrfParams(**self.crf_params))
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(
                f"ClipESConfig.templates must be non-empty and contain '{{}}', got {self.templates}"
            )
        checks = {
            "scale": self.scale > 0,
            "attention_layers": self.attention_layers >= 1,
            "pos_embed_mode": self.pos_embed_mode in ("bilinear", "bicubic"),
            "sinkhorn_iters": self.sinkhorn_iters >= 0,
            "affinity_power": self.affinity_power >= 1,
            "box_threshold": 0 <= self.box_threshold < 1,
            "bg_power": self.bg_power > 0,
            "confidence_threshold": 0 <= self.confidence_threshold <= 1,
            "logit_scale": self.logit_scale is None or self.logit_scale > 0,
            "crf_input": self.crf_input in CRF_INPUTS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"ClipESConfig: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}"
            )

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> ClipESConfig:
        """Build from a plain dict (e.g. a manifest), rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown ClipESConfig option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["templates"], out["background"] = list(self.templates), list(self.background)
        return out


@dataclass
class ImageCams:
    """CAMs of one image. ``grid_cams`` / ``grid_refined``: ``[K, h, w]`` on the feature grid (refined:
    ``None`` without CAA); ``cams``: ``[K, H, W]`` at image resolution (the refined ones if available);
    ``probs``: ``[K + n_bg]`` softmax scores of the labels then the background prompts."""

    labels: tuple[int, ...]
    grid_cams: Tensor
    grid_refined: Tensor | None
    cams: Tensor
    probs: Tensor


@dataclass
class PseudoLabel:
    """``label``: ``[H, W]`` int64, 0 background, ``c + 1`` for class index ``c``; ``confidence``: ``[H, W]``
    float32; ``mask``: ``label`` with ``ignore_index`` below the confidence threshold."""

    label: Tensor
    confidence: Tensor
    mask: Tensor
    cams: ImageCams


class ClipES:
    """CLIP-ES pseudo-mask generator around a :class:`~distill.teachers.ClipTeacher`.

    Args:
        teacher: a CLIP teacher (ViT for CAA; ResNet only with ``refine=False``).
        class_names: the vocabulary (a name or a list of synonyms per class); image labels index it.
        config: :class:`ClipESConfig`.

    Raises:
        NotImplementedError: CAA requested with a ResNet teacher.
        CrfUnavailableError: ``config.crf`` without ``pydensecrf2`` installed.
    """

    def __init__(
        self,
        teacher: ClipTeacher,
        class_names: Sequence[str | Sequence[str]],
        *,
        config: ClipESConfig | None = None,
    ) -> None:
        self.config = config = config or ClipESConfig()
        self.teacher = teacher
        self.visual = teacher.model.visual
        self.kind = dense_kind(self.visual)
        if self.kind == "resnet" and config.refine:
            raise NotImplementedError(
                f"CLIP-ES class-aware attention refinement needs a ViT teacher's patch-to-patch attention; "
                f"{teacher.model_name} is a ResNet. Use ClipESConfig(refine=False) for softmax-GradCAM CAMs "
                f"(computed on the attention-pool input) without refinement."
            )
        if config.crf and not crf_available():
            raise CrfUnavailableError(
                "ClipESConfig(crf=True) needs the 'pydensecrf2' package "
                "(pip install pydensecrf2); or set crf=False"
            )
        if not class_names:
            raise ValueError("class_names must not be empty")
        self.class_names = list(class_names)
        self.stride = dense_stride(self.visual)
        templates = list(config.templates)
        self.foreground = teacher.text_classifier(self.class_names, templates=templates)  # [N, D]
        self.background = (
            teacher.text_classifier(list(config.background), templates=templates)
            if config.background
            else self.foreground.new_zeros(0, self.foreground.shape[1])
        )
        self.logit_scale = (
            float(config.logit_scale)
            if config.logit_scale is not None
            else float(teacher.model.logit_scale.exp())
        )
        device = teacher.device
        self._mean = torch.tensor(teacher.mean, device=device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(teacher.std, device=device).view(1, 3, 1, 1) * 255

    def _check(self, image: Tensor, labels: Sequence[int], image_id: Any) -> tuple[int, ...]:
        where = f"image {image_id!r}" if image_id is not None else "image"
        if (
            not isinstance(image, Tensor)
            or image.dtype != torch.uint8
            or image.ndim != 3
            or image.shape[0] != 3
        ):
            desc = (
                f"{tuple(image.shape)} {image.dtype}"
                if isinstance(image, Tensor)
                else type(image).__name__
            )
            raise ValueError(f"{where}: expected a uint8 RGB tensor [3, H, W], got {desc}")
        labels = tuple(int(c) for c in labels)
        if not labels:
            raise ValueError(
                f"{where}: empty label list (CLIP-ES needs at least one image-level label)"
            )
        unknown = sorted({c for c in labels if not 0 <= c < len(self.class_names)})
        if unknown:
            raise ValueError(
                f"{where}: label indices {unknown} are outside the vocabulary of "
                f"{len(self.class_names)} classes"
            )
        return tuple(dict.fromkeys(labels))

    def cams(self, image: Tensor, labels: Sequence[int], *, image_id: Any = None) -> ImageCams:
        """CAMs of ``labels`` (class indices) for a uint8 RGB ``[3, H, W]`` image."""
        labels = self._check(image, labels, image_id)
        cfg = self.config
        height, width = image.shape[1:]
        size = cam_input_size(height, width, stride=self.stride, scale=cfg.scale)
        pixels = image.to(self._mean.device).float()[None]
        if size != (height, width):
            pixels = F.interpolate(
                pixels, size=size, mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 255)
        pixels = (pixels - self._mean) / self._std
        text = torch.cat([self.foreground[list(labels)], self.background])
        out = softmax_gradcam(
            self.visual,
            pixels,
            text,
            range(len(labels)),
            logit_scale=self.logit_scale,
            attention_layers=cfg.attention_layers if cfg.refine else 0,
            pos_embed_mode=cfg.pos_embed_mode,
        )
        refined = None
        if cfg.refine:
            affinity = class_aware_affinity(
                out.attention, sinkhorn_iters=cfg.sinkhorn_iters, power=cfg.affinity_power
            )
            refined = refine_cams(out.cams, affinity, threshold=cfg.box_threshold)
        chosen = refined if refined is not None else out.cams
        full = F.interpolate(
            chosen[None], size=(height, width), mode="bilinear", align_corners=False
        )[0]
        return ImageCams(
            labels=labels,
            grid_cams=out.cams,
            grid_refined=refined,
            cams=full.clamp(0, 1),
            probs=out.probs,
        )

    def pseudo_label(
        self, image: Tensor, labels: Sequence[int], *, image_id: Any = None
    ) -> PseudoLabel:
        """Pseudo-mask and confidence for a uint8 RGB ``[3, H, W]`` image labelled with class indices ``labels``."""
        cfg = self.config
        cams = self.cams(image, labels, image_id=image_id)
        scores = background_scores(cams.cams, bg_power=cfg.bg_power)  # [K + 1, H, W]
        if cfg.crf:
            rgb = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
            probs = torch.from_numpy(
                dense_crf(
                    np.ascontiguousarray(crf_image(rgb, mode=cfg.crf_input)),
                    scores.cpu().numpy().astype(np.float32),
                    params=cfg.crf_params,
                )
            ).to(scores.device)
        else:
            probs = normalize_scores(scores)
        index, confidence = label_and_confidence(probs)
        lut = torch.tensor((0, *(c + 1 for c in cams.labels)), device=index.device)
        label = lut[index]
        mask = ignore_low_confidence(
            label, confidence, threshold=cfg.confidence_threshold, ignore_index=cfg.ignore_index
        )
        return PseudoLabel(label=label, confidence=confidence.float(), mask=mask, cams=cams)
