"""BARON's neighbourhood sampling: bags of regions around proposals (pure torch, no Detectron2).

For one image (:meth:`NeighborhoodSampler.sample`):

1. candidates: the ``topk`` proposals by objectness (scores ``sigmoid(logit)``), plus the ground-truth
   boxes with score 1 (``use_gt``);
2. filters: aspect ratio ``w / h`` strictly inside ``(aspect_thresh, 1 / aspect_thresh)``, the share
   of the image area the box covers (intersection with the image box / image area, mmdet's ``iof``
   of the image box against the proposal) ``> area_ratio_thresh`` and score ``> objectness_thresh``;
   if nothing passes, the highest-scoring candidate alone is kept; otherwise NMS at ``nms_thresh``
   (wusize/ovdet@d74a20c ``ovdet/methods/baron/baron_base.py``, ``preprocess_proposals``);
3. for each kept box, a 3x3 grid of box-sized cells centred on it (cells numbered row-major 0..8, the
   box is cell 4), neighbours shifted by ``interval`` box sizes (BARON: -0.1, overlapping). The
   probability to extend left / right is ``min(p0, (h / w) ** alpha * p0)``, up / down
   ``min(p0, (w / h) ** alpha * p0)``, and 0 when the room left between the box and the image border on
   that side is at most ``(cutoff_thresh + interval)`` box sizes; an edge cell gets its side's
   probability, a corner cell the square root of the product of its two sides';
4. ``min(max_groups, n!)`` distinct groups (``n`` = cells with a positive probability besides the
   centre) drawn by independent Bernoulli trials per cell (the centre always in), each clipped to the
   image; the bag's enclosing box spans its cells;
5. each group gives ``min(max_permutations, k!)`` distinct random orders of its ``k`` cells: the
   sequences fed to the text encoder.

All randomness comes from torch's global RNG (reseeded per step by ``SOLVER.DETERMINISTIC_STEPS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = [
    "Bags",
    "NeighborhoodSampler",
    "cell_probabilities",
    "grid_boxes",
    "image_area_share",
    "normalize_in_bag",
    "single_region_ids",
]

_LEFT, _RIGHT, _UP, _DOWN = (0, 3, 6), (2, 5, 8), (0, 1, 2), (6, 7, 8)


@dataclass
class Bags:
    """The bags of one image, flattened into region sequences.

    Attributes:
        boxes: ``[R, 4]`` xyxy region boxes (image coordinates), sequence after sequence.
        normed_boxes: ``[R, 4]`` the same boxes relative to their bag's enclosing box (0..1).
        cells: ``[R]`` grid cell (0..8) of each region.
        centres: ``[R]`` index of the centre box (bag-centre proposal) each region was drawn around.
        seq_lengths: ``[S]`` regions per sequence (``sum == R``).
        seq_bag: ``[S]`` index of each sequence's bag (into ``bag_boxes``); permutations share it.
        bag_boxes: ``[G, 4]`` enclosing box of every bag (group).
    """

    boxes: Tensor
    normed_boxes: Tensor
    cells: Tensor
    centres: Tensor
    seq_lengths: Tensor
    seq_bag: Tensor
    bag_boxes: Tensor

    @property
    def num_regions(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_centres(self) -> int:
        """Centre boxes the bags were drawn around (an upper bound: ``centres.max() + 1``)."""
        return int(self.centres.max()) + 1 if self.centres.numel() else 0


def single_region_ids(bags: list[Bags]) -> Tensor:
    """``[sum R]`` one id per distinct (image, centre box, grid cell) region of a batch of images.

    A region is repeated in a batch: each cell once per permutation of every group containing it,
    the centre cell in every group. BARON's single-region loss must not use the copies of a region
    as each other's negatives; it masks pairs with equal ids (``box_ids`` in wusize/ovdet@d74a20c
    ``ovdet/methods/baron/baron_kd.py``, ``get_losses``).
    """
    ids, offset = [], 0
    for bag in bags:
        ids.append((bag.centres + offset) * 9 + bag.cells)
        offset += bag.num_centres
    if not ids:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([i.to(ids[0].device) for i in ids])


def image_area_share(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``[K]`` area of each box ``[K, 4]`` inside the image / the image area.

    mmdet's ``bbox_overlaps(image_box, boxes, mode="iof")`` divides by the area of its first
    argument, the image box ``[0, 0, w - 1, h - 1]`` (wusize/ovdet@d74a20c ``baron_kd.py``,
    ``_sample_on_topk``), so this is the box's share of the image, not of the box.
    """
    height, width = float(image_size[0]), float(image_size[1])
    x1 = boxes[:, 0].clamp(min=0.0)
    y1 = boxes[:, 1].clamp(min=0.0)
    x2 = boxes[:, 2].clamp(max=width - 1.0)
    y2 = boxes[:, 3].clamp(max=height - 1.0)
    inside = (x2 - x1).clamp(min=0.0) * (y2 - y1).clamp(min=0.0)
    return inside / max((width - 1.0) * (height - 1.0), 1e-12)


def cell_probabilities(
    box: Tensor,
    image_size: tuple[int, int],
    *,
    alpha: float,
    base_probability: float,
    cutoff_thresh: float,
    interval: float,
) -> Tensor:
    """``[9]`` inclusion probability of each grid cell around ``box [4]`` (the centre cell is 1)."""
    height, width = image_size
    w = float(box[2] - box[0]) + 1e-12
    h = float(box[3] - box[1]) + 1e-12
    sides = (
        torch.tensor([h / w, h / w, w / h, w / h], dtype=torch.float64).pow(alpha)
        * base_probability
    )
    room = torch.tensor(
        [
            float(box[0]) / w,
            (width - float(box[2])) / w,
            float(box[1]) / h,
            (height - float(box[3])) / h,
        ],
        dtype=torch.float64,
    )
    sides = torch.where(room > cutoff_thresh + interval, sides, torch.zeros_like(sides))
    sides = torch.nan_to_num(sides.clamp(0.0, base_probability), nan=0.0)
    probs = torch.ones(9, dtype=torch.float64)
    for side, cells in zip(sides, (_LEFT, _RIGHT, _UP, _DOWN)):
        probs[list(cells)] *= side
    probs[[0, 2, 6, 8]] = probs[[0, 2, 6, 8]].sqrt()
    return probs.clamp(0.0, 1.0).float()


def grid_boxes(box: Tensor, *, interval: float) -> Tensor:
    """``[9, 4]`` the 3x3 box-sized cells around ``box [4]`` (row-major; cell 4 is ``box``)."""
    w, h = box[2] - box[0], box[3] - box[1]
    offsets = torch.arange(3, dtype=box.dtype, device=box.device) - 1.0
    shift = offsets * (1.0 + interval)
    dx = shift.repeat(3) * w  # column offset of cell (row i, col j): j - 1
    dy = shift.repeat_interleave(3) * h  # row offset
    return box[None] + torch.stack([dx, dy, dx, dy], dim=1)


def normalize_in_bag(boxes: Tensor, bag_box: Tensor) -> Tensor:
    """``boxes [K, 4]`` in the coordinates of ``bag_box [4]`` scaled to its size (0..1 inside)."""
    origin = bag_box[:2].repeat(2)
    size = (bag_box[2:] - bag_box[:2]).repeat(2) + 1e-12
    return (boxes - origin) / size


class NeighborhoodSampler:
    """Samples :class:`Bags` around proposals (see the module docstring for the rules and BARON's values)."""

    def __init__(
        self,
        *,
        topk: int = 300,
        objectness_thresh: float = 0.85,
        aspect_thresh: float = 0.25,
        area_ratio_thresh: float = 0.01,
        nms_thresh: float = 0.1,
        alpha: float = 3.0,
        base_probability: float = 0.3,
        cutoff_thresh: float = 0.3,
        interval: float = -0.1,
        max_groups: int = 3,
        max_permutations: int = 2,
        use_gt: bool = True,
        max_draws: int = 100,
    ) -> None:
        if not 0.0 < aspect_thresh < 1.0:
            raise ValueError(f"aspect_thresh must be in (0, 1), got {aspect_thresh}")
        if not 0.0 <= area_ratio_thresh < 1.0:
            raise ValueError(f"area_ratio_thresh must be in [0, 1), got {area_ratio_thresh}")
        if topk < 1 or max_groups < 1 or max_permutations < 1:
            raise ValueError(
                f"topk, max_groups and max_permutations must be >= 1, got {topk}, {max_groups}, "
                f"{max_permutations}"
            )
        if not 0.0 <= base_probability <= 1.0:
            raise ValueError(f"base_probability must be in [0, 1], got {base_probability}")
        self.topk = int(topk)
        self.objectness_thresh = float(objectness_thresh)
        self.aspect_thresh = float(aspect_thresh)
        self.area_ratio_thresh = float(area_ratio_thresh)
        self.nms_thresh = float(nms_thresh)
        self.alpha = float(alpha)
        self.base_probability = float(base_probability)
        self.cutoff_thresh = float(cutoff_thresh)
        self.interval = float(interval)
        self.max_groups = int(max_groups)
        self.max_permutations = int(max_permutations)
        self.use_gt = bool(use_gt)
        self.max_draws = int(max_draws)

    # ------------------------------------------------------------------ step 1-2
    def select(
        self,
        boxes: Tensor,
        objectness_logits: Tensor,
        gt_boxes: Tensor | None = None,
        *,
        image_size: tuple[int, int],
    ) -> tuple[Tensor, Tensor]:
        """``([M, 4] centre boxes, [M] scores)``: top-k proposals (+ GT, score 1), filtered by
        aspect ratio, image-area share and objectness, then NMS.

        ``image_size``: ``(height, width)`` of the image."""
        if boxes.dim() != 2 or boxes.shape[1] != 4 or objectness_logits.shape != (boxes.shape[0],):
            raise ValueError(
                f"proposal boxes must be [K, 4] with objectness_logits [K], got "
                f"{tuple(boxes.shape)} and {tuple(objectness_logits.shape)}"
            )
        if not torch.isfinite(boxes).all():
            raise ValueError("proposal boxes contain NaN or inf values")
        scores = torch.sigmoid(objectness_logits.float())
        order = scores.topk(min(self.topk, scores.numel())).indices
        boxes, scores = boxes[order].float(), scores[order]
        if self.use_gt and gt_boxes is not None and gt_boxes.numel():
            boxes = torch.cat([boxes, gt_boxes.float().to(boxes.device)])
            scores = torch.cat([scores, scores.new_ones(gt_boxes.shape[0])])
        size = boxes[:, 2:] - boxes[:, :2]
        keep = (size > 0).all(dim=1)
        if not keep.any():
            return boxes.new_zeros(0, 4), scores.new_zeros(0)
        boxes, scores, size = boxes[keep], scores[keep], size[keep]
        ratio = size[:, 0] / size[:, 1]
        valid = (
            (ratio > self.aspect_thresh)
            & (ratio < 1.0 / self.aspect_thresh)
            & (image_area_share(boxes, image_size) > self.area_ratio_thresh)
            & (scores > self.objectness_thresh)
        )
        if not valid.any():
            best = scores.argmax()
            return boxes[best][None], scores[best][None]
        boxes, scores = boxes[valid], scores[valid]
        kept = nms(boxes, scores, self.nms_thresh)
        return boxes[kept], scores[kept]

    # ------------------------------------------------------------------ step 3-5
    def _groups(self, probs: Tensor) -> list[list[int]]:
        """Distinct sorted cell lists drawn by Bernoulli trials (centre always in)."""
        context = int((probs > 0).sum()) - 1
        wanted = min(self.max_groups, math.factorial(context))
        groups: list[list[int]] = []
        for _ in range(self.max_draws):
            cells = torch.bernoulli(probs).nonzero().flatten().tolist()
            if cells not in groups:
                groups.append(cells)
                if len(groups) == wanted:
                    break
        return groups

    def _permutations(self, k: int) -> list[list[int]]:
        wanted = min(self.max_permutations, math.factorial(k))
        perms: list[list[int]] = []
        while len(perms) < wanted:
            perm = torch.randperm(k).tolist()
            if perm not in perms:
                perms.append(perm)
        return perms

    def sample(
        self,
        boxes: Tensor,
        objectness_logits: Tensor,
        image_size: tuple[int, int],
        *,
        gt_boxes: Tensor | None = None,
    ) -> Bags:
        """Bags of one ``image_size = (height, width)`` image from its proposals (and GT boxes)."""
        height, width = int(image_size[0]), int(image_size[1])
        centres, _ = self.select(boxes, objectness_logits, gt_boxes, image_size=(height, width))
        return self.sample_around(centres, (height, width))

    def sample_around(self, centres: Tensor, image_size: tuple[int, int]) -> Bags:
        """Bags of one ``image_size = (height, width)`` image around the centre boxes ``[M, 4]``
        (steps 3-5)."""
        height, width = int(image_size[0]), int(image_size[1])
        limits = torch.tensor(
            [width, height, width, height], dtype=torch.float32, device=centres.device
        )
        regions, normed, cells, lengths, seq_bag, bag_boxes = [], [], [], [], [], []
        centre_of_region: list[int] = []
        for index, box in enumerate(centres):
            probs = cell_probabilities(
                box.cpu(),
                (height, width),
                alpha=self.alpha,
                base_probability=self.base_probability,
                cutoff_thresh=self.cutoff_thresh,
                interval=self.interval,
            )
            grid = torch.minimum(grid_boxes(box, interval=self.interval).clamp(min=0), limits)
            for group in self._groups(probs):
                group_boxes = grid[group]
                bag = torch.cat(
                    [group_boxes[:, :2].min(dim=0).values, group_boxes[:, 2:].max(dim=0).values]
                )
                in_bag = normalize_in_bag(group_boxes, bag)
                for perm in self._permutations(len(group)):
                    regions.append(group_boxes[perm])
                    normed.append(in_bag[perm])
                    cells.append(torch.tensor(group, dtype=torch.long)[perm])
                    centre_of_region.extend([index] * len(group))
                    lengths.append(len(group))
                    seq_bag.append(len(bag_boxes))
                bag_boxes.append(bag)
        device = centres.device
        if not regions:
            empty = centres.new_zeros(0, 4)
            none = torch.zeros(0, dtype=torch.long, device=device)
            return Bags(empty, empty, none, none, none, none, empty)
        return Bags(
            torch.cat(regions),
            torch.cat(normed),
            torch.cat(cells).to(device),
            torch.tensor(centre_of_region, dtype=torch.long, device=device),
            torch.tensor(lengths, device=device),
            torch.tensor(seq_bag, device=device),
            torch.stack(bag_boxes),
        )
