"""Detectron2's ``ROIPooler`` with a faster CPU backward of RoIAlign on small feature maps.

torchvision's CPU ``roi_align`` backward loops over every output element on one thread; on the toy
world's FPN maps it is about a third of a training iteration. RoI-align is linear in the features and
its bilinear sampling factorizes per axis, so

    out[k, c, i, j] = sum_{h, w} a_y[k, i, h] * F[b_k, c, h, w] * a_x[k, j, w]

with ``a_y [K, S, H]`` and ``a_x [K, S, W]`` the per-bin mean 1-D weights
(:func:`distill.ops.reference.bin_axis_weights`, torchvision's sampling rules). The gradient of the
features is then, per image, one batched matmul with ``a_x`` and one matmul with ``a_y``:

    grad_F[b] = sum_{k in b} a_y[k]^T (grad[k] a_x[k])

:class:`SeparableGradROIAlign` keeps torchvision's forward and uses this backward for CPU feature maps of
at most :data:`SEPARABLE_MAX_AREA` cells (its cost grows with ``H * W``; larger maps, GPUs, tracing and
inference use torchvision's op unchanged). :class:`OVROIPooler` is a ``ROIPooler`` whose RoIAlign levels
are these modules (``MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD``).
"""

from __future__ import annotations

import torch
from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler
from torch import Tensor, nn
from torchvision.ops import roi_align

from distill.ops.reference import bin_axis_weights

__all__ = [
    "SEPARABLE_MAX_AREA",
    "separable_roi_align_backward",
    "SeparableGradROIAlign",
    "OVROIPooler",
]

SEPARABLE_MAX_AREA = 64 * 64
"""Largest ``H * W`` of a CPU feature map that uses the separable backward (measured faster up to here)."""


def separable_roi_align_backward(
    grad: Tensor,
    rois: Tensor,
    input_shape: tuple[int, int, int, int],
    *,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Gradient of ``roi_align(features, rois, ...)`` w.r.t. ``features``.

    Args:
        grad: ``[K, C, S_h, S_w]`` gradient of the RoIAlign output.
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2), as given to ``roi_align``.
        input_shape: ``(B, C, H, W)`` of the features.
    Returns:
        ``[B, C, H, W]`` in ``grad``'s dtype.
    """
    num_images, channels, height, width = (int(v) for v in input_shape)
    num_rois, _, bins_h, bins_w = grad.shape
    out = grad.new_zeros(num_images, channels, height, width)
    if num_rois == 0:
        return out
    coords = rois.detach().to(torch.promote_types(grad.dtype, torch.float32))
    opts = dict(spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned)
    a_y = bin_axis_weights(coords[:, 2], coords[:, 4], length=height, bins=bins_h, **opts).to(
        grad.dtype
    )
    a_x = bin_axis_weights(coords[:, 1], coords[:, 3], length=width, bins=bins_w, **opts).to(
        grad.dtype
    )
    batch = coords[:, 0].long()
    for image in torch.unique(batch).tolist():
        index = (batch == image).nonzero().squeeze(1)
        k = index.numel()
        # [k, C * S_h, S_w] @ [k, S_w, W] -> [k, C, S_h, W]
        rows = torch.bmm(grad[index].reshape(k, channels * bins_h, bins_w), a_x[index])
        rows = (
            rows.view(k, channels, bins_h, width)
            .permute(0, 2, 1, 3)
            .reshape(k * bins_h, channels * width)
        )
        # [H, k * S_h] @ [k * S_h, C * W] -> [H, C, W]
        column = a_y[index].permute(2, 0, 1).reshape(height, k * bins_h)
        out[image] = (column @ rows).view(height, channels, width).permute(1, 0, 2)
    return out


class _SeparableGradRoIAlignFunction(torch.autograd.Function):
    """torchvision's ``roi_align`` forward, :func:`separable_roi_align_backward` backward."""

    @staticmethod
    def forward(
        ctx,
        features: Tensor,
        rois: Tensor,
        output_size: tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.settings = (tuple(features.shape), spatial_scale, sampling_ratio, aligned)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        shape, spatial_scale, sampling_ratio, aligned = ctx.settings
        features_grad = separable_roi_align_backward(
            grad.contiguous(),
            rois,
            shape,
            spatial_scale=spatial_scale,
            sampling_ratio=sampling_ratio,
            aligned=aligned,
        )
        return features_grad, None, None, None, None, None


class SeparableGradROIAlign(ROIAlign):
    """Detectron2's ``ROIAlign`` (same arguments, same forward) whose CPU backward on maps of at most
    :data:`SEPARABLE_MAX_AREA` cells is :func:`separable_roi_align_backward` (the same gradient up to
    float summation order, computed by matrix products on all threads)."""

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        if self._separable(input):
            if rois.dim() != 2 or rois.size(1) != 5:
                raise ValueError(
                    f"rois must be [K, 5] (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}"
                )
            return _SeparableGradRoIAlignFunction.apply(
                input,
                rois.to(dtype=input.dtype),
                self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
            )
        return super().forward(input, rois)

    @staticmethod
    def _separable(input: Tensor) -> bool:
        return (
            input.device.type == "cpu"
            and input.requires_grad
            and torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not input.is_quantized
            and input.dim() == 4
            and input.shape[-2] * input.shape[-1] <= SEPARABLE_MAX_AREA
        )


class OVROIPooler(ROIPooler):
    """``ROIPooler`` (same arguments, level assignment and output) whose RoIAlign levels are
    :class:`SeparableGradROIAlign`. Other pooler types are Detectron2's."""

    def __init__(
        self, output_size, scales, sampling_ratio: int, pooler_type: str, **kwargs
    ) -> None:
        super().__init__(output_size, scales, sampling_ratio, pooler_type, **kwargs)
        if pooler_type in ("ROIAlign", "ROIAlignV2"):
            self.level_poolers = nn.ModuleList(
                SeparableGradROIAlign(
                    level.output_size,
                    spatial_scale=level.spatial_scale,
                    sampling_ratio=level.sampling_ratio,
                    aligned=level.aligned,
                )
                for level in self.level_poolers
            )
