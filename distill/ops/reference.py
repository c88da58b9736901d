"""Pure PyTorch RoI-align embedding pooling (the CPU path and the test oracle).

RoI-align with ``S x S`` bins followed by a mean over the bins is linear in the features, and its
sampling grid is a tensor product of ``S * grid_h`` row samples and ``S * grid_w`` column samples
whose bilinear weights factorise (``w(y, x) = w(y) * w(x)``, including the out-of-range rule). So

    embedding[k, c] = sum_{h, w} a_y[k, h] * F[b_k, c, h, w] * a_x[k, w]

where ``a_y[k]`` (``[H]``) is the mean 1-D interpolation weight of RoI ``k``'s row samples and
``a_x[k]`` (``[W]``) that of its column samples. This module builds ``a_y`` and ``a_x`` with
vectorised tensor ops, forms the weight map ``a_y a_x^T`` (``[K, H * W]``) in bounded chunks and
contracts it with the features by one matrix product per image, so backward is autograd's
(``grad_F[b] = map^T @ grad``) and the ``[K, C, S, S]`` RoI-align output never exists.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["axis_weights", "bin_axis_weights", "roi_embed_reference_rois"]

# Upper bounds on transient tensor sizes (elements), to keep memory flat for large inputs.
_SAMPLE_BUDGET = 1 << 22
_MAP_BUDGET = 1 << 24


def axis_weights(
    lo: Tensor,
    hi: Tensor,
    *,
    length: int,
    bins: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Mean 1-D bilinear weights of each RoI's samples along one axis.

    Args:
        lo, hi: ``[K]`` RoI start/end along the axis in image coordinates (floating).
        length: feature-map size along the axis (``H`` or ``W``).
        bins: number of bins along the axis (``S``).
        spatial_scale, sampling_ratio, aligned: as in ``torchvision.ops.roi_align``
            (``sampling_ratio <= 0`` means ``ceil(extent / bins)`` samples per bin).

    Returns:
        ``[K, length]`` weights (dtype of ``lo``); row ``k`` sums to the fraction of RoI ``k``'s
        samples that fall inside ``[-1, length]``. Follows torchvision's arithmetic order so float32
        results match it closely.
    """
    start, bin_size, grid = _sampling_grid(
        lo,
        hi,
        bins=bins,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    k = lo.shape[0]
    gmax = int(grid.max()) if k else 0
    if gmax == 0:
        return lo.new_zeros(k, length)
    if k * bins * gmax <= _SAMPLE_BUDGET:
        return _sampled_weights(start, bin_size, grid, bins=bins, length=length)
    out = lo.new_zeros(k, length)
    order = torch.argsort(grid)
    for idx in _budget_chunks(grid[order], order, bins):
        out[idx] = _sampled_weights(start[idx], bin_size[idx], grid[idx], bins=bins, length=length)
    return out


def bin_axis_weights(
    lo: Tensor,
    hi: Tensor,
    *,
    length: int,
    bins: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Per-bin mean 1-D bilinear weights: ``[K, bins, length]``, row ``[k, i]`` for bin ``i`` of RoI ``k``.

    RoI-align output ``[k, c, i, j]`` is ``sum_{h, w} a_y[k, i, h] * F[c, h, w] * a_x[k, j, w]`` with
    ``a_y`` / ``a_x`` from this function along each axis (same arguments as :func:`axis_weights`, whose
    result is the mean of these rows over the bins). Transient memory is ``K * bins * samples``.
    """
    start, bin_size, grid = _sampling_grid(
        lo,
        hi,
        bins=bins,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    if lo.shape[0] == 0 or int(grid.max()) == 0:
        return lo.new_zeros(lo.shape[0], bins, length)
    return _sampled_weights(start, bin_size, grid, bins=bins, length=length, per_bin=True)


def _sampling_grid(
    lo: Tensor, hi: Tensor, *, bins: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """``(start, bin_size, samples per bin)`` of each RoI along one axis, as torchvision computes them."""
    offset = 0.5 if aligned else 0.0
    start = lo * spatial_scale - offset
    extent = (hi * spatial_scale - offset) - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_size = extent / bins
    if sampling_ratio > 0:
        grid = torch.full_like(lo, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(bin_size).clamp(min=0, max=2**30).long()
    return start, bin_size, grid


def _budget_chunks(sorted_grid: Tensor, order: Tensor, bins: int) -> list[Tensor]:
    """Split RoIs (sorted by grid size) so each chunk's padded sample tensor fits the budget."""
    gmax = int(sorted_grid[-1])
    if gmax == 0:
        return []
    n = order.numel()
    if n == 1 or n * bins * gmax <= _SAMPLE_BUDGET:
        return [order]
    half = n // 2
    return _budget_chunks(sorted_grid[:half], order[:half], bins) + _budget_chunks(
        sorted_grid[half:], order[half:], bins
    )


def _sampled_weights(
    start: Tensor, bin_size: Tensor, grid: Tensor, *, bins: int, length: int, per_bin: bool = False
) -> Tensor:
    """``[n, length]`` mean 1-D weights for ``n`` RoIs (``[n, bins, length]`` per bin with ``per_bin``),
    samples padded to the largest grid."""
    n = start.shape[0]
    dtype = start.dtype
    gmax = int(grid.max())
    p = torch.arange(bins, device=start.device, dtype=dtype).view(1, bins, 1)
    i = torch.arange(gmax, device=start.device, dtype=dtype).view(1, 1, gmax)
    bs = bin_size.view(n, 1, 1)
    g = grid.view(n, 1, 1)
    # torchvision: y = roi_start + ph * bin_size + (iy + .5) * bin_size / grid
    y = (start.view(n, 1, 1) + p * bs) + ((i + 0.5) * bs) / g.clamp(min=1).to(dtype)
    valid = (i < g) & (y >= -1.0) & (y <= length)
    y = y.clamp(min=0.0, max=float(length))
    low = y.long()  # y >= 0, so truncation is floor
    edge = low >= length - 1
    low = torch.where(edge, torch.full_like(low, length - 1), low)
    high = torch.where(edge, low, low + 1)
    y = torch.where(edge, low.to(dtype), y)
    frac = (y - low.to(dtype)) * valid
    w_low = (1.0 - frac) * valid
    if per_bin:
        out = start.new_zeros(n, bins, length)
        out.scatter_add_(2, low, w_low)
        out.scatter_add_(2, high, frac)
        return out / g.clamp(min=1).to(dtype)
    out = start.new_zeros(n, length)
    out.scatter_add_(1, low.view(n, -1), w_low.view(n, -1))
    out.scatter_add_(1, high.view(n, -1), frac.view(n, -1))
    return out / (bins * grid).clamp(min=1).to(dtype).view(n, 1)


def roi_embed_reference_rois(
    features: Tensor,
    rois: Tensor,
    *,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Region embeddings from validated inputs.

    Args:
        features: ``[B, C, H, W]`` floating tensor.
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2), validated, on ``features``' device.

    Returns:
        ``[K, C]`` in ``features.dtype``; differentiable w.r.t. ``features`` (not ``rois``).
    """
    num_images, channels, height, width = features.shape
    k = rois.shape[0]
    if k == 0:
        return features.flatten(2)[:0, :, 0]  # [0, C], still attached to the autograd graph
    coord_dtype = torch.promote_types(features.dtype, torch.float32)
    rois = rois.detach().to(coord_dtype)
    batch = rois[:, 0].long()
    opts = dict(
        bins=output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    a_y = axis_weights(rois[:, 2], rois[:, 4], length=height, **opts).to(features.dtype)
    a_x = axis_weights(rois[:, 1], rois[:, 3], length=width, **opts).to(features.dtype)

    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch, minlength=num_images).tolist()
    rows_per_chunk = max(1, _MAP_BUDGET // (height * width))
    pieces = []
    for b, idx in enumerate(order.split(counts)):
        if idx.numel() == 0:
            continue
        flat = features[b].reshape(channels, height * width)
        for sub in idx.split(rows_per_chunk):
            weight_map = (a_y[sub, :, None] * a_x[sub, None, :]).reshape(
                sub.numel(), height * width
            )
            pieces.append(weight_map @ flat.T)
    embeddings = torch.cat(pieces)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(k, device=order.device)
    return embeddings[inverse]
