"""Public RoI-align embedding pooling op: validation and dispatch.

``roi_embed(F, boxes, ...)`` equals ``torchvision.ops.roi_align(F, boxes, S, spatial_scale,
sampling_ratio, aligned).mean((2, 3))`` (optionally L2-normalised) without materialising the
``[K, C, S, S]`` RoI-align output.

Dispatch: CUDA tensors use the fused CUDA kernel (built on first use, see ``distill.ops.cuda_ext``);
CPU tensors use the vectorised PyTorch implementation in ``distill.ops.reference`` (measured faster
than torchvision's roi_align + mean on CPU, see ``benchmarks/roi_embed.py``). Setting the
environment variable ``OVDISTILL_ROI_EMBED_IMPL=reference`` forces the PyTorch implementation on
every device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor

from distill.ops.cuda_ext import roi_embed_cuda
from distill.ops.reference import roi_embed_reference_rois

__all__ = ["IMPL_ENV", "roi_embed", "roi_embed_reference", "boxes_to_rois"]

IMPL_ENV = "OVDISTILL_ROI_EMBED_IMPL"
_IMPLS = ("auto", "reference", "cuda")
# Largest number of samples per bin per axis: beyond this a box is garbage (~10^6 feature pixels at
# S = 7) and torchvision would loop for hours; we reject it instead.
MAX_SAMPLES_PER_BIN = 1 << 16

BoxesLike = Tensor | Sequence[Tensor]


def roi_embed(
    features: Tensor,
    boxes: BoxesLike,
    *,
    output_size: int = 7,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
    normalize: bool = False,
) -> Tensor:
    """Region embeddings: RoI-align with ``output_size x output_size`` bins, then the mean over bins.

    Args:
        features: ``[B, C, H, W]`` floating tensor (differentiable).
        boxes: ``[K, 5]`` tensor of (batch index, x1, y1, x2, y2) in image coordinates, or a
            sequence of ``B`` tensors ``[K_i, 4]`` (x1, y1, x2, y2), one per image, like torchvision.
        output_size: bins per side ``S``.
        spatial_scale: feature-map units per image unit (e.g. 1/16).
        sampling_ratio: samples per bin per axis; ``<= 0`` means adaptive ``ceil(extent / S)``.
        aligned: shift box coordinates by -0.5 pixel (torchvision's ``aligned=True``).
        normalize: L2-normalise each embedding (an all-zero embedding stays zero).

    Returns:
        ``[K, C]`` embeddings in ``features.dtype``, on ``features.device``; no gradient w.r.t. boxes.

    Raises:
        ValueError: malformed shapes/dtypes, non-finite boxes, batch indices out of range, bad options.
        RuntimeError: the CUDA extension could not be built (names the compiler problem).
    """
    rois = _validate(
        features,
        boxes,
        output_size=output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
    )
    impl = _impl_choice()
    opts = dict(
        output_size=int(output_size),
        spatial_scale=float(spatial_scale),
        sampling_ratio=int(sampling_ratio),
        aligned=bool(aligned),
    )
    if impl == "cuda" and not features.is_cuda:
        raise ValueError(f"{IMPL_ENV}=cuda needs CUDA tensors, got features on {features.device}")
    if features.is_cuda and impl != "reference" and rois.shape[0] > 0:
        out = roi_embed_cuda(features, rois, **opts)
    else:
        out = roi_embed_reference_rois(features, rois, **opts)
    return nnf.normalize(out, dim=1) if normalize else out


def roi_embed_reference(
    features: Tensor,
    boxes: BoxesLike,
    *,
    output_size: int = 7,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
    normalize: bool = False,
) -> Tensor:
    """Pure PyTorch ``roi_embed`` (same arguments and result) on any device; the test oracle."""
    rois = _validate(
        features,
        boxes,
        output_size=output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
    )
    out = roi_embed_reference_rois(
        features,
        rois,
        output_size=int(output_size),
        spatial_scale=float(spatial_scale),
        sampling_ratio=int(sampling_ratio),
        aligned=bool(aligned),
    )
    return nnf.normalize(out, dim=1) if normalize else out


def boxes_to_rois(boxes: BoxesLike, *, device: torch.device | None = None) -> Tensor:
    """``[K, 5]`` (batch index, x1, y1, x2, y2) from a ``[K, 5]`` tensor or a list of ``[K_i, 4]``."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"boxes: expected a [K, 5] tensor (batch_idx, x1, y1, x2, y2) or a list of "
                f"[K_i, 4] tensors, got shape {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, Sequence) or not all(isinstance(b, Tensor) for b in boxes):
        raise ValueError(
            f"boxes: expected a Tensor or a sequence of Tensors, got {type(boxes).__name__}"
        )
    parts = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(
                f"boxes[{i}]: expected a [K_i, 4] tensor (x1, y1, x2, y2), got shape {tuple(b.shape)}"
            )
        parts.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
    if not parts:
        return torch.zeros(0, 5, device=device)
    dtype = parts[0].dtype
    for i, p in enumerate(parts):
        dtype = torch.promote_types(dtype, p.dtype)
        if p.device != parts[0].device:
            raise ValueError(f"boxes[{i}] is on {p.device} but boxes[0] is on {parts[0].device}")
    return torch.cat([p.to(dtype) for p in parts])


def _impl_choice() -> str:
    impl = os.environ.get(IMPL_ENV, "auto").strip().lower() or "auto"
    if impl not in _IMPLS:
        raise ValueError(f"{IMPL_ENV}={impl!r}: expected one of {', '.join(_IMPLS)}")
    return impl


def _validate(
    features: Tensor,
    boxes: BoxesLike,
    *,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """Check the inputs; return ``[K, 5]`` rois on ``features.device`` (boxes dtype kept)."""
    if not isinstance(features, Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features: expected a [B, C, H, W] tensor, got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features: expected a floating dtype, got {features.dtype}")
    num_images, _, height, width = features.shape
    if height == 0 or width == 0:
        raise ValueError(f"features: empty spatial size {height}x{width}")
    if isinstance(boxes, Sequence) and not isinstance(boxes, Tensor) and len(boxes) != num_images:
        raise ValueError(
            f"boxes: got a list of {len(boxes)} box tensors for a batch of {num_images} images"
        )
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
        raise ValueError(f"output_size: expected a positive int, got {output_size!r}")
    if (
        isinstance(sampling_ratio, bool)
        or not isinstance(sampling_ratio, int)
        or sampling_ratio > MAX_SAMPLES_PER_BIN
    ):
        raise ValueError(
            f"sampling_ratio: expected an int <= {MAX_SAMPLES_PER_BIN} (<= 0 means adaptive), "
            f"got {sampling_ratio!r}"
        )
    if not (
        isinstance(spatial_scale, (int, float))
        and math.isfinite(spatial_scale)
        and spatial_scale > 0
    ):
        raise ValueError(f"spatial_scale: expected a finite positive number, got {spatial_scale!r}")
    rois = boxes_to_rois(boxes, device=features.device)
    if rois.device != features.device:
        raise ValueError(f"boxes are on {rois.device} but features are on {features.device}")
    if rois.is_complex() or rois.dtype == torch.bool:
        raise ValueError(f"boxes: expected a real dtype, got {rois.dtype}")
    if not rois.is_floating_point():
        rois = rois.to(torch.promote_types(features.dtype, torch.float32))
    if rois.shape[0] == 0:
        return rois
    finite = torch.isfinite(rois).all(dim=1)
    batch = rois[:, 0]
    bad_batch = finite & ((batch != batch.round()) | (batch < 0) | (batch >= num_images))
    span = ((rois[:, 3:5] - rois[:, 1:3]).abs().amax(dim=1) * spatial_scale) / output_size
    too_big = (
        finite & (span > MAX_SAMPLES_PER_BIN) if sampling_ratio <= 0 else torch.zeros_like(finite)
    )
    n_nonfinite, n_bad_batch, n_too_big = torch.stack(
        [(~finite).sum(), bad_batch.sum(), too_big.sum()]
    ).tolist()  # one host sync
    if n_nonfinite:
        k = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"boxes: {n_nonfinite} box(es) have non-finite values, first at row {k}: "
            f"{rois[k].tolist()}"
        )
    if n_bad_batch:
        k = int(torch.nonzero(bad_batch)[0, 0])
        raise ValueError(
            f"boxes: batch index {rois[k, 0].item()} at row {k} is not an integer in "
            f"[0, {num_images})"
        )
    if n_too_big:
        k = int(torch.nonzero(too_big)[0, 0])
        raise ValueError(
            f"boxes: box at row {k} ({rois[k, 1:].tolist()}) spans more than "
            f"{MAX_SAMPLES_PER_BIN * output_size} feature pixels; adaptive sampling would need more "
            f"than {MAX_SAMPLES_PER_BIN} samples per bin"
        )
    return rois
