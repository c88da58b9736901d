"""CLIP-ES class-aware attention-based affinity (CAA).

From the patch-to-patch attention ``W`` (averaged over heads and the last 8 blocks, class token removed):

1. Sinkhorn-style normalization: columns to sum 1, rows to sum 1, then ``iters`` (2) more column/row
   passes -> ``D``;
2. symmetrize: ``(D + D^T) / 2``; raise to ``power`` (2: the reference squares it once) -> ``A``;
3. per class, mask ``A``'s columns with the union of the boxes around the connected regions where the
   class CAM exceeds ``threshold * max`` (0.4): ``refined = (A * m[None, :]) @ cam``, rescaled to [0, 1].

The reference finds the boxes with ``cv2.findContours`` on the thresholded uint8 map and clips each
box's exclusive right/bottom edge to ``size - 1``, so a region touching the right or bottom border loses
its last column/row; here boxes always cover their whole region (8-connected components, pure torch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.cam.gradcam import minmax_scale

__all__ = [
    "sinkhorn_normalize",
    "class_aware_affinity",
    "connected_components",
    "cam_boxes",
    "box_mask_from_cam",
    "refine_cams",
]


def sinkhorn_normalize(matrix: Tensor, *, iters: int = 2) -> Tensor:
    """Alternating column / row normalization: one pass, then ``iters`` more (CLIP-ES: 2).

    Args:
        matrix: ``[..., n, n]`` non-negative (attention) weights.

    Returns:
        Same shape; rows sum to 1 (columns approximately).
    """
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"matrix must be [..., n, n], got {tuple(matrix.shape)}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    out = matrix
    for _ in range(iters + 1):
        out = out / out.sum(dim=-2, keepdim=True)
        out = out / out.sum(dim=-1, keepdim=True)
    return out


def class_aware_affinity(attention: Tensor, *, sinkhorn_iters: int = 2, power: int = 2) -> Tensor:
    """``[n, n]`` attention -> CLIP-ES affinity ``(S + S^T)/2`` raised to ``power``, ``S = sinkhorn(attention)``."""
    if power < 1:
        raise ValueError(f"power must be >= 1, got {power}")
    normalized = sinkhorn_normalize(attention.double(), iters=sinkhorn_iters)
    return torch.linalg.matrix_power((normalized + normalized.transpose(-1, -2)) / 2, power).to(
        attention.dtype
    )


def connected_components(mask: Tensor) -> Tensor:
    """8-connected components of a boolean ``[h, w]`` mask.

    Returns:
        ``[h, w]`` int64: 0 outside the mask, components numbered ``1..n`` in raster order of their last pixel.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be [h, w], got {tuple(mask.shape)}")
    h, w = mask.shape
    keep = mask.to(torch.float64)
    labels = torch.arange(1, h * w + 1, dtype=torch.float64, device=mask.device).view(h, w) * keep
    for _ in range(h * w):  # max-propagation converges in at most (longest geodesic path) steps
        grown = F.max_pool2d(labels[None, None], kernel_size=3, stride=1, padding=1)[0, 0] * keep
        if torch.equal(grown, labels):
            break
        labels = grown
    ids = labels.long()
    unique = torch.unique(ids[ids > 0])
    out = torch.zeros_like(ids)
    out[ids > 0] = torch.searchsorted(unique, ids[ids > 0]) + 1
    return out


def cam_boxes(cam: Tensor, *, threshold: float = 0.4) -> Tensor:
    """Boxes around the connected regions where ``cam > threshold * cam.max()``.

    Args:
        cam: ``[h, w]`` class activation map.

    Returns:
        ``[n, 4]`` int64 ``(x0, y0, x1, y1)`` in grid cells, end-exclusive; ``[0, 4]`` if the CAM is
        zero everywhere.
    """
    if cam.ndim != 2:
        raise ValueError(f"cam must be [h, w], got {tuple(cam.shape)}")
    peak = cam.max()
    if not peak > 0:
        return torch.zeros(0, 4, dtype=torch.long, device=cam.device)
    components = connected_components(cam > threshold * peak)
    n = int(components.max())
    ys, xs = torch.nonzero(components, as_tuple=True)
    owner = components[ys, xs] - 1
    big = torch.iinfo(torch.long).max
    x0 = torch.full((n,), big, dtype=torch.long, device=cam.device).scatter_reduce(
        0, owner, xs, "amin"
    )
    y0 = torch.full((n,), big, dtype=torch.long, device=cam.device).scatter_reduce(
        0, owner, ys, "amin"
    )
    x1 = (
        torch.full((n,), -1, dtype=torch.long, device=cam.device).scatter_reduce(
            0, owner, xs, "amax"
        )
        + 1
    )
    y1 = (
        torch.full((n,), -1, dtype=torch.long, device=cam.device).scatter_reduce(
            0, owner, ys, "amax"
        )
        + 1
    )
    return torch.stack([x0, y0, x1, y1], dim=1)


def box_mask_from_cam(cam: Tensor, *, threshold: float = 0.4) -> Tensor:
    """``[h, w]`` bool: union of :func:`cam_boxes` (the CAA mask of one class)."""
    mask = torch.zeros(cam.shape, dtype=torch.bool, device=cam.device)
    for x0, y0, x1, y1 in cam_boxes(cam, threshold=threshold).tolist():
        mask[y0:y1, x0:x1] = True
    return mask


def refine_cams(cams: Tensor, affinity: Tensor, *, threshold: float = 0.4) -> Tensor:
    """CAA refinement ``rescale((A * m_k[None, :]) @ cam_k)`` of every class.

    Args:
        cams: ``[K, h, w]`` CAMs on the feature grid.
        affinity: ``[h*w, h*w]`` from :func:`class_aware_affinity`.
        threshold: box threshold relative to each CAM's max.

    Returns:
        ``[K, h, w]`` refined CAMs rescaled to ``[0, 1]`` (all zero for an all-zero CAM).
    """
    k, h, w = cams.shape
    if affinity.shape != (h * w, h * w):
        raise ValueError(f"affinity {tuple(affinity.shape)} does not match the {h}x{w} CAM grid")
    masks = (
        torch.stack([box_mask_from_cam(cam, threshold=threshold) for cam in cams])
        if k
        else cams.bool()
    )
    masked = (cams * masks).flatten(1).to(affinity.dtype)  # [K, hw]
    refined = (masked @ affinity.t()).view(k, h, w)  # row i: sum_j A[i, j] m_j cam_j
    return minmax_scale(refined.to(cams.dtype))
