"""BARON's boxes cache: bag-centre boxes of each training image remembered across its visits.

wusize/ovdet@d74a20c ``ovdet/methods/baron/boxes_cache.py`` (``BoxesCache.update``), called in
``baron_kd.py`` ``_sample_on_topk`` on the centre boxes left by the filters and NMS, before the
neighbourhood sampling. Enabled by the OV-COCO 90kx2 config only
(``baron_kd_faster_rcnn_r50_fpn_syncbn_90kx2.py``: ``start_iter=20000``; ``topk``, ``nms_thr`` and
``objectness_thr`` come from its ``sampling_cfg``).

Frames: a training image is resized / flipped (/ cropped) by its augmentation. The cache keeps boxes
in the ORIGINAL image frame; an image's augmentation is the axis-aligned map ``x' = sx * x + tx``,
``y' = sy * y + ty``, given as ``transform = (sx, tx, sy, ty)`` (``OVDatasetMapper`` puts it in the
dataset dict as ``"image_transform"``). A negative scale is a flip (x1 and x2 swap): mmdet's
``scale_boxes`` then ``bbox_flip`` of the official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.utils import comm
from torch import Tensor
from torchvision.ops import nms

__all__ = ["BoxesCache", "invert_transform", "to_image_frame"]


def _as_floats(transform: Tensor | Sequence[float]) -> tuple[float, float, float, float]:
    values = [float(v) for v in transform]
    if len(values) != 4 or values[0] == 0.0 or values[2] == 0.0:
        raise ValueError(
            f"an image transform is (scale_x, offset_x, scale_y, offset_y) with non-zero scales "
            f"(dataset dict field 'image_transform'), got {values}"
        )
    return values[0], values[1], values[2], values[3]


def to_image_frame(boxes: Tensor, transform: Tensor | Sequence[float]) -> Tensor:
    """``boxes [N, 4]`` xyxy mapped by ``transform = (sx, tx, sy, ty)``; still xyxy after a flip."""
    sx, tx, sy, ty = _as_floats(transform)
    x = boxes[:, 0::2] * sx + tx  # [N, 2]: x1', x2'
    y = boxes[:, 1::2] * sy + ty
    if sx < 0:
        x = x.flip(1)
    if sy < 0:
        y = y.flip(1)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def invert_transform(transform: Tensor | Sequence[float]) -> tuple[float, float, float, float]:
    """The map back: augmented image -> original image."""
    sx, tx, sy, ty = _as_floats(transform)
    return 1.0 / sx, -tx / sx, 1.0 / sy, -ty / sy


class BoxesCache:
    """Per training image id, up to ``topk`` boxes with scores ``[n, 5]`` (x1, y1, x2, y2, score) in
    the original image frame, on the CPU; and a call counter.

    :meth:`merge` is called once per training image (per process). From its ``start_iter``-th call
    on (ovdet: ``iter += 1; if iter < start_iter: return``), the image's cached boxes are mapped
    into the current frame and merged with the current centre boxes: scores ``> score_thresh`` (if
    none passes, the single best box is kept), NMS at ``nms_thresh``; all of them are returned (no
    top-k, as official). The same merge in the original frame, top ``topk`` by score, replaces the
    image's cache on every process (all-gathered like ovdet's ``sync_multiple_gpus``; the last rank
    wins for an image seen on several ranks at once).

    State (counter and boxes) is not saved in checkpoints: ovdet registers both as non-persistent
    buffers (``save=False``), so a resumed run restarts the counter and the cache empty. ovdet sizes
    a ``[num_images, topk, 5]`` buffer from the training json (``json_path``, image id -> row) and
    pads each row with zero boxes of score 0; this dict holds only the rows written, which the
    ``score > score_thresh`` filter makes equivalent (a zero row can only be picked by the fallback
    when no current box has a positive score).
    """

    def __init__(
        self,
        *,
        start_iter: int = 20000,
        topk: int = 300,
        score_thresh: float = 0.85,
        nms_thresh: float = 0.1,
    ) -> None:
        if start_iter < 0 or topk < 1:
            raise ValueError(f"start_iter must be >= 0 and topk >= 1, got {start_iter}, {topk}")
        self.start_iter = int(start_iter)
        self.topk = int(topk)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.calls = 0
        self.boxes: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.boxes)

    def _filter_and_nms(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        if scores.numel() == 0:
            return boxes, scores
        passed = scores > self.score_thresh
        keep = passed.nonzero().flatten() if passed.any() else scores.argmax().view(1)
        boxes, scores = boxes[keep], scores[keep]
        kept = nms(boxes, scores, self.nms_thresh)  # sorted by decreasing score
        return boxes[kept], scores[kept]

    @torch.no_grad()
    def merge(
        self,
        image_id: int,
        boxes: Tensor,
        scores: Tensor,
        transform: Tensor | Sequence[float],
    ) -> tuple[Tensor, Tensor]:
        """Merge one image's centre boxes with its cache and update the cache.

        Args:
            image_id: the training image's id (dataset dict ``image_id``).
            boxes: ``[M, 4]`` xyxy centre boxes in the current (augmented) image.
            scores: ``[M]`` their scores.
            transform: ``(sx, tx, sy, ty)`` original image -> current image.

        Returns:
            ``(boxes [M', 4], scores [M'])`` in the current image; the inputs unchanged before the
            ``start_iter``-th call.
        """
        self.calls += 1
        if self.calls < self.start_iter:
            return boxes, scores
        cached = self.boxes.get(int(image_id))
        if cached is None:
            cached = boxes.new_zeros(0, 5)
        cached = cached.to(device=boxes.device, dtype=boxes.dtype)
        cached_scores = cached[:, 4]
        merged_scores = torch.cat([cached_scores, scores.to(boxes.dtype)])
        out_boxes, out_scores = self._filter_and_nms(
            torch.cat([to_image_frame(cached[:, :4], transform), boxes]), merged_scores
        )
        back = to_image_frame(boxes, invert_transform(transform))
        kept_boxes, kept_scores = self._filter_and_nms(
            torch.cat([cached[:, :4], back]), merged_scores
        )
        update = torch.cat([kept_boxes, kept_scores[:, None]], dim=1)[: self.topk].float().cpu()
        for other_id, rows in comm.all_gather((int(image_id), update)):
            self.boxes[other_id] = rows
        return out_boxes, out_scores
