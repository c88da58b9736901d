"""``ClipTeacher``: a frozen open_clip model (ResNet or ViT, built-in or custom config) as a teacher."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from distill.ops import roi_embed
from distill.teachers.base import Teacher, register_teacher
from distill.teachers.boxes import check_boxes, check_image, crop_and_resize, scale_and_clip_boxes
from distill.teachers.crop_tokens import crop_tokens_forward
from distill.teachers.errors import TextTooLongError
from distill.teachers.loading import load_open_clip
from distill.teachers.maskclip import (
    DenseOutput,
    dense_kind,
    dense_stride,
    refine_logits,
    resnet_dense_forward,
    vit_dense_forward,
)
from distill.utils import sha256_json
from distill.vocab import dense_cosine_logits

__all__ = ["ClipTeacher"]

_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


@register_teacher("clip")
class ClipTeacher(Teacher):
    """A frozen open_clip model with its own preprocessing.

    Args:
        model_name: open_clip architecture ("ViT-B-32", "RN50", ...) or the name of ``model_config``.
        pretrained: open_clip pretrained tag (needs network) or a local checkpoint file (strictly loaded).
        model_config: open_clip model-config JSON for a custom architecture (registered as ``model_name``).
        device: where the model runs and outputs are returned.
        precision: "fp32", or "fp16"/"bf16" for autocast inference (weights stay fp32).
        allow_random_init: allow ``pretrained=None`` (random weights; tests/benchmarks only).
        dense_output_stride: ResNet only: 32 (default, the plain network as in MaskCLIP's R50 configs), 16
            (MaskCLIP's ``r50dc5``) or 8; res5 (and res4) strides become dilations, same weights.

    Attributes:
        embed_dim, input_size ``(h, w)``, image_size (``int`` if square, else ``input_size``), mean, std
        (RGB, for ``[0, 1]`` pixels), context_length, fingerprint, model (the open_clip model).
    """

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: str | os.PathLike | None = None,
        model_config: str | os.PathLike | Mapping | None = None,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        allow_random_init: bool = False,
        dense_output_stride: int | None = None,
    ):
        super().__init__()
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        if model_config is None:
            model_name = model_name.replace("/", "-")  # "ViT-B/32" -> open_clip's "ViT-B-32"
        loaded = load_open_clip(
            model_name,
            pretrained=pretrained,
            model_config=model_config,
            device=device,
            allow_random_init=allow_random_init,
        )
        self.model = loaded.model
        self.model_name = model_name
        self.precision = precision
        self.embed_dim = int(loaded.config["embed_dim"])
        self.input_size = _pair(loaded.preprocess.get("size", self.model.visual.image_size))
        self.image_size = (
            self.input_size[0] if self.input_size[0] == self.input_size[1] else self.input_size
        )
        self.mean = tuple(float(m) for m in loaded.preprocess["mean"])
        self.std = tuple(float(s) for s in loaded.preprocess["std"])
        self.register_buffer(
            "_mean", torch.tensor(self.mean, device=device).view(3, 1, 1) * 255, persistent=False
        )
        self.register_buffer(
            "_std", torch.tensor(self.std, device=device).view(3, 1, 1) * 255, persistent=False
        )
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.context_length = int(
            getattr(self.model, "context_length", 0) or self.tokenizer.context_length
        )
        if dense_output_stride not in (None, 8, 16, 32):
            raise ValueError(f"resnet output_stride must be 8, 16 or 32, got {dense_output_stride}")
        if dense_output_stride is not None and dense_kind(self.model.visual) != "resnet":
            raise ValueError(
                f"dense_output_stride applies to ResNet teachers; {model_name} is a ViT "
                f"(its dense stride is the patch size)"
            )
        self.dense_output_stride = dense_output_stride
        self.fingerprint = sha256_json(
            {
                "config": loaded.config,
                "weights": loaded.weights,
                "preprocess": {"size": list(self.input_size), "mean": self.mean, "std": self.std},
            }
        )
        self.eval()

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _normalize(self, pixels: Tensor) -> Tensor:
        """``[N, 3, H, W]`` float pixels in ``[0, 255]`` -> model input."""
        return (pixels - self._mean) / self._std

    @torch.no_grad()
    def _encode_pixels(self, pixels: Tensor) -> Tensor:
        """``[N, 3, h, w]`` float ``[0, 255]`` pixels at the input size -> ``[N, D]`` normalized float32."""
        with self._autocast():
            feats = self.model.encode_image(self._normalize(pixels))
        return F.normalize(feats.float(), dim=-1)

    def _image_batch(self, images: Tensor) -> Tensor:
        if (
            not isinstance(images, Tensor)
            or images.dtype != torch.uint8
            or images.ndim != 4
            or images.shape[1] != 3
        ):
            desc = (
                f"{tuple(images.shape)} {images.dtype}"
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise ValueError(f"images must be a uint8 RGB tensor [N, 3, H, W], got {desc}")
        return images.to(self.device).float()

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """``[N, context_length]`` token ids; ``TextTooLongError`` instead of truncation.

        open_clip's SimpleTokenizer is run once per text (start + BPE + end tokens, zero padded, as its
        ``__call__`` does); other tokenizers are checked through their Hugging Face tokenizer.
        """
        limit = self.context_length
        tok = self.tokenizer
        if (
            isinstance(tok, open_clip.SimpleTokenizer)
            and getattr(tok, "reduction_fn", None) is None
        ):
            out = torch.zeros(len(texts), limit, dtype=torch.long)
            for i, text in enumerate(texts):
                ids = [tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
                if len(ids) > limit:
                    raise TextTooLongError(text, len(ids), limit)
                out[i, : len(ids)] = torch.tensor(ids)
            return out
        hf = getattr(tok, "tokenizer", None)
        if callable(hf):
            for text in texts:
                count = len(hf(text)["input_ids"])
                if count > limit:
                    raise TextTooLongError(text, count, limit)
        return tok(list(texts))

    # ------------------------------------------------------------------ text / images
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], *, batch_size: int = 1024) -> Tensor:
        """``[N, D]`` normalized float32 embeddings; ``TextTooLongError`` (a ``ValueError``) for a text
        longer than the context."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start : start + batch_size]).to(self.device)
            with self._autocast():
                feats = self.model.encode_text(tokens)
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=self.device)

    @torch.no_grad()
    def encode_images(self, images: Tensor, *, batch_size: int = 256) -> Tensor:
        """``[N, D]`` normalized embeddings of uint8 RGB ``[N, 3, H, W]`` images.

        Images of another size than ``input_size`` are resized (bilinear, antialiased) first.
        """
        pixels = self._image_batch(images)
        out = []
        for start in range(0, pixels.shape[0], batch_size):
            chunk = pixels[start : start + batch_size]
            if tuple(chunk.shape[-2:]) != self.input_size:
                chunk = F.interpolate(
                    chunk,
                    size=self.input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            out.append(self._encode_pixels(chunk))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=self.device)

    # ------------------------------------------------------------------ regions
    def region_embeddings(
        self,
        images: Sequence[Tensor],
        boxes: Sequence[Tensor],
        *,
        mode: str = "crop",
        scales: Sequence[float] = (1.0, 1.5),
        batch_size: int = 256,
        dense_short_side: int | None = None,
        dense_output_size: int = 7,
        progress: bool = False,
    ) -> list[Tensor]:
        """Per image ``[K_i, D]`` normalized embeddings of its ``[K_i, 4]`` xyxy boxes.

        Args:
            images: uint8 RGB ``[3, H, W]`` tensors (any device, any size).
            boxes: per image ``[K_i, 4]`` absolute xyxy boxes; non-finite, zero-area or fully outside
                boxes raise ``ValueError`` naming image and box (pre-filter with ``valid_box_mask``).
            mode: "crop": every box enlarged by each scale around its center, clipped to the image,
                cropped + resized to the input size (one ``roi_align`` per image), encoded in batches of
                ``batch_size`` crops across images; the normalized embeddings are averaged over scales and
                renormalized. "dense": one MaskCLIP dense pass per image, then ``distill.ops.roi_embed``
                (``dense_output_size`` bins) per box, normalized; ``scales`` is ignored.
            dense_short_side: dense mode resizes the image so its short side is this (default: native
                size); both sides are then rounded to a multiple of the feature stride.
            progress: tqdm bar over images.
        """
        images, boxes = list(images), list(boxes)
        if len(images) != len(boxes):
            raise ValueError(f"got {len(images)} images but {len(boxes)} box tensors")
        checked = []
        for i, (image, bx) in enumerate(zip(images, boxes)):
            check_image(image, index=i)
            checked.append(check_boxes(bx, image.shape[1], image.shape[2], image_index=i))
        if mode == "crop":
            if not scales or any(not (float(s) > 0) for s in scales):
                raise ValueError(f"scales must be positive numbers, got {scales}")
            return self._crop_embeddings(
                images, checked, [float(s) for s in scales], batch_size, progress
            )
        if mode == "dense":
            return self._dense_region_embeddings(
                images, checked, dense_short_side, dense_output_size, progress
            )
        raise ValueError(f"mode must be 'crop' or 'dense', got {mode!r}")

    def _crops(
        self,
        images: list[Tensor],
        boxes: list[Tensor],
        scales: list[float],
        batch_size: int,
        progress: bool,
    ) -> Iterator[Tensor]:
        """Crops of all boxes x scales of all images, in order, in batches of exactly ``batch_size``."""
        pending: list[Tensor] = []
        count = 0
        for image, bx in tqdm(
            list(zip(images, boxes)), disable=not progress, desc="region crops", unit="img"
        ):
            if bx.shape[0] == 0:
                continue
            rois = scale_and_clip_boxes(bx.to(self.device), scales, image.shape[1], image.shape[2])
            image = image.to(self.device)
            for start in range(0, rois.shape[0], batch_size):
                pending.append(
                    crop_and_resize(image, rois[start : start + batch_size], self.input_size)
                )
                count += pending[-1].shape[0]
                if count >= batch_size:
                    merged = torch.cat(pending)
                    while merged.shape[0] >= batch_size:
                        yield merged[:batch_size]
                        merged = merged[batch_size:]
                    pending, count = ([merged], merged.shape[0]) if merged.shape[0] else ([], 0)
        if pending:
            yield torch.cat(pending)

    @torch.no_grad()
    def _crop_embeddings(
        self,
        images: list[Tensor],
        boxes: list[Tensor],
        scales: list[float],
        batch_size: int,
        progress: bool,
    ) -> list[Tensor]:
        counts = [b.shape[0] for b in boxes]
        chunks = [
            self._encode_pixels(crops)
            for crops in self._crops(images, boxes, scales, batch_size, progress)
        ]
        flat = torch.cat(chunks) if chunks else torch.zeros(0, self.embed_dim, device=self.device)
        emb = F.normalize(flat.view(-1, len(scales), self.embed_dim).mean(dim=1), dim=-1)
        return list(emb.split(counts))

    @torch.no_grad()
    def crop_tokens(
        self, images: Sequence[Tensor], boxes: Sequence[Tensor], *, batch_size: int = 256
    ) -> list[Tensor]:
        """Per image ``[K_i, D, h, w]`` token maps (float32, not normalized) of crops of its
        ``[K_i, 4]`` xyxy boxes: BARON's single-region image tokens.

        The crops are those of ``region_embeddings(mode="crop", scales=(1.0,))`` (clipped to the
        image, resized to the input size); each goes through ovdet's ``return_tokens`` path
        (:mod:`distill.teachers.crop_tokens`), ``h x w`` the input size over the patch size (ViT)
        or 32 (ResNet).
        """
        images, boxes = list(images), list(boxes)
        if len(images) != len(boxes):
            raise ValueError(f"got {len(images)} images but {len(boxes)} box tensors")
        checked = []
        for i, (image, bx) in enumerate(zip(images, boxes)):
            check_image(image, index=i)
            checked.append(check_boxes(bx, image.shape[1], image.shape[2], image_index=i))
        chunks = []
        for crops in self._crops(images, checked, [1.0], batch_size, False):
            with self._autocast():
                chunks.append(crop_tokens_forward(self.model.visual, self._normalize(crops)))
        if not chunks:
            return [torch.zeros(0, self.embed_dim, 1, 1, device=self.device) for _ in boxes]
        flat = torch.cat(chunks).float()
        return list(flat.split([b.shape[0] for b in checked]))

    @torch.no_grad()
    def _dense_region_embeddings(
        self,
        images: list[Tensor],
        boxes: list[Tensor],
        short_side: int | None,
        output_size: int,
        progress: bool,
    ) -> list[Tensor]:
        stride = self.dense_stride
        out = []
        for image, bx in tqdm(
            list(zip(images, boxes)), disable=not progress, desc="dense regions", unit="img"
        ):
            if bx.shape[0] == 0:
                out.append(torch.zeros(0, self.embed_dim, device=self.device))
                continue
            height, width = image.shape[1:]
            factor = 1.0 if short_side is None else short_side / min(height, width)
            new_h = max(stride, round(height * factor / stride) * stride)
            new_w = max(stride, round(width * factor / stride) * stride)
            pixels = image.to(self.device).float()[None]
            if (new_h, new_w) != (height, width):
                pixels = F.interpolate(
                    pixels,
                    size=(new_h, new_w),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            feats = self._dense(self._normalize(pixels)).features.float()
            clipped = scale_and_clip_boxes(bx.to(self.device), [1.0], height, width)
            clipped = clipped * torch.tensor(
                [new_w / width, new_h / height] * 2, device=self.device
            )
            out.append(
                roi_embed(
                    feats,
                    [clipped],
                    output_size=output_size,
                    spatial_scale=feats.shape[-1] / new_w,
                    sampling_ratio=0,
                    aligned=True,
                    normalize=True,
                )
            )
        return out

    # ------------------------------------------------------------------ dense (MaskCLIP)
    @property
    def dense_stride(self) -> int:
        """Input pixels per dense-feature cell: the patch size (ViT) or the ResNet's output stride (32 unless
        ``dense_output_stride`` was given)."""
        return self.dense_output_stride or dense_stride(self.model.visual)

    def _dense(
        self, x: Tensor, *, return_keys: bool = False, record_attention: int = 0
    ) -> DenseOutput:
        visual = self.model.visual
        with self._autocast():
            if dense_kind(visual) == "resnet":
                if record_attention:
                    raise ValueError("record_attention needs a ViT teacher")
                return resnet_dense_forward(
                    visual, x, return_keys=return_keys, output_stride=self.dense_stride
                )
            return vit_dense_forward(
                visual, x, return_keys=return_keys, record_attention=record_attention
            )

    @torch.no_grad()
    def dense_forward(
        self, images: Tensor, *, return_keys: bool = False, record_attention: int = 0
    ) -> DenseOutput:
        """MaskCLIP dense pass on uint8 RGB ``[B, 3, H, W]`` images at their given size.

        Returns a ``DenseOutput`` (features ``[B, D, h, w]`` float32, optional keys, recorded attentions).
        For gradients (e.g. CLIP-ES Grad-CAM), call ``distill.teachers.maskclip.vit_dense_forward`` directly.
        """
        result = self._dense(
            self._normalize(self._image_batch(images)),
            return_keys=return_keys,
            record_attention=record_attention,
        )
        result.features = result.features.float()
        result.keys = result.keys.float() if result.keys is not None else None
        return result

    def dense_embeddings(self, images: Tensor) -> Tensor:
        """``[B, D, h, w]`` MaskCLIP dense embeddings (not normalized), ``h = H // stride``."""
        return self.dense_forward(images).features

    @torch.no_grad()
    def pixel_logits(
        self,
        images: Tensor,
        classifier: Tensor,
        *,
        key_smoothing: float | None = None,
        prompt_denoise: float | None = None,
        key_norm: str = "spatial",
    ) -> Tensor:
        """MaskCLIP per-pixel class scores ``[B, N, h, w]`` at the dense-feature resolution.

        Args:
            images: uint8 RGB ``[B, 3, H, W]``.
            classifier: ``[N, D]`` text embeddings (normalized here).
            key_smoothing: MaskCLIP ``ks_thresh`` (1.0 in the paper) or ``None``.
            prompt_denoise: MaskCLIP ``pd_thresh`` (0.5 in the paper) or ``None``.
            key_norm: see ``maskclip.key_smoothing``.

        Returns:
            Cosine logits (denoised classes at -100); with key smoothing, the smoothed softmax scores.
        """
        if classifier.ndim != 2 or classifier.shape[1] != self.embed_dim:
            raise ValueError(
                f"classifier must be [N, {self.embed_dim}], got {tuple(classifier.shape)}"
            )
        dense = self.dense_forward(images, return_keys=key_smoothing is not None)
        feats = F.normalize(dense.features, dim=1)
        logits = dense_cosine_logits(
            feats, F.normalize(classifier.to(feats), dim=1), temperature=1.0
        )
        return refine_logits(
            logits,
            dense.keys,
            key_smoothing_thresh=key_smoothing,
            prompt_denoise_thresh=prompt_denoise,
            key_norm=key_norm,
        )
