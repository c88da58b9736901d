"""BARON's RoI heads: ViLD's heads with the pseudo-word classifier and the bag-of-regions distillation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor
from torch.nn import functional as F

from distill.losses import QueuedInfoNCELoss
from distill.ops import roi_embed
from distill.targets import OnlineTeacher

from ..host import forward_mask
from .baron_predictor import BaronOutputLayers, BoxPositionEmbedding, load_baron_text_encoder
from .baron_sampler import Bags, NeighborhoodSampler, single_region_ids
from .boxes_cache import BoxesCache
from .roi_heads import ViLDROIHeads

if TYPE_CHECKING:
    from distill.teachers.handle import TeacherHandle

__all__ = ["BaronROIHeads", "pack_sequences"]

_TEXT_EMBEDDINGS = "the text embeddings MODEL.VILD.TEXT_EMBEDDINGS"

SINGLE_TOKENS = ("bag_crop", "dense_image")
"""Token paths of the single-region loss (``MODEL.BARON.SINGLE.TOKENS``, see ``detectors.config``)."""


def pack_sequences(
    words: Tensor, keep: Tensor | None, lengths: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Concatenate the words of consecutive regions into sequences.

    Args:
        words: ``[R, W, C]`` words of the regions, sequence after sequence.
        keep: ``[R, W]`` bool (word dropout) or None.
        lengths: ``[S]`` regions per sequence (``sum == R``).

    Returns:
        ``(seq_words [S, Lmax * W, C], seq_valid [S, Lmax * W], seq_of_region [R], slot [R])``: region ``r``
        occupies words ``slot[r] * W .. (slot[r] + 1) * W`` of sequence ``seq_of_region[r]``.
    """
    num, per, dim = words.shape
    seq_of_region = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=words.device), lengths
    )
    starts = torch.cumsum(lengths, 0) - lengths
    slot = torch.arange(num, device=words.device) - starts[seq_of_region]
    longest = int(lengths.max()) if lengths.numel() else 0
    seq_words = words.new_zeros(lengths.numel(), longest, per, dim)
    seq_words = seq_words.index_put((seq_of_region, slot), words)
    seq_valid = torch.zeros(lengths.numel(), longest, per, dtype=torch.bool, device=words.device)
    seq_valid[seq_of_region, slot] = keep if keep is not None else True
    return seq_words.flatten(1, 2), seq_valid.flatten(1, 2), seq_of_region, slot


@ROI_HEADS_REGISTRY.register()
class BaronROIHeads(ViLDROIHeads):
    """ViLD's heads with BARON's classifier (:class:`BaronOutputLayers`) and distillation.

    Training, per image: :class:`NeighborhoodSampler` draws bags around the RPN proposals and GT
    boxes (the centre boxes merged with the image's earlier ones by the optional
    :class:`BoxesCache`);
    every region of every bag sequence is pooled, sent through the box head (the separate
    ``image_head`` for the ensemble variant), projected to pseudo words plus its in-bag
    :class:`BoxPositionEmbedding`; the words of a sequence, concatenated, go through the frozen text
    encoder -> the student bag embedding. The teacher embeds a crop of the bag's enclosing box
    (``region_embeddings(mode="crop", scales=(1,))``). ``loss_bag``: :class:`QueuedInfoNCELoss`
    (permutations of one bag are not each other's negatives; queue rows of the same image are masked).
    ``loss_single`` (``single_tokens="bag_crop"``, ovdet's ``baron_kd.py``): the normalized mean of
    each region's word tokens (``forward_tokens(token_path="eot_value")``) vs the teacher's tokens of
    its bag crop (``crop_tokens``) RoI-aligned 1x1 on the region's in-bag box; ``"dense_image"``
    (old): the mean of the normalized causal word tokens vs the teacher's dense tokens of the whole
    image RoI-aligned on the region. Same loss; the copies of one region
    (:func:`~.baron_sampler.single_region_ids`) are not each other's negatives. Inference is ViLD's.

    The teacher is not a submodule (not saved, not trained, not copied): attach it, or a lazy
    :class:`distill.teachers.TeacherHandle`, with :meth:`set_teacher`.
    """

    @configurable
    def __init__(
        self,
        *,
        sampler: NeighborhoodSampler,
        position_embed: BoxPositionEmbedding,
        bag_loss: QueuedInfoNCELoss,
        single_loss: QueuedInfoNCELoss | None = None,
        single_pooler_resolution: int = 7,
        single_tokens: str = "bag_crop",
        boxes_cache: BoxesCache | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(self.box_predictor, BaronOutputLayers):
            raise TypeError(
                f"BaronROIHeads needs a BaronOutputLayers box predictor, got {type(self.box_predictor)}"
            )
        self.sampler = sampler
        self.position_embed = position_embed
        self.bag_loss = bag_loss
        self.single_loss = single_loss
        self.single_pooler_resolution = int(single_pooler_resolution)
        if single_tokens not in SINGLE_TOKENS:
            raise ValueError(
                f"MODEL.BARON.SINGLE.TOKENS must be one of {list(SINGLE_TOKENS)}, "
                f"got {single_tokens!r}"
            )
        self.single_tokens = single_tokens
        self._teacher: TeacherHandle | None = None  # a plain attribute: never a submodule
        self.boxes_cache = boxes_cache  # bag centres across visits of an image; not in checkpoints

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        baron, sampling = cfg.MODEL.BARON, cfg.MODEL.BARON.SAMPLING
        predictor = ret["box_predictor"]
        ret["distill_weight"] = 0.0
        ret["sampler"] = NeighborhoodSampler(
            topk=sampling.TOPK,
            objectness_thresh=sampling.OBJECTNESS_THRESH,
            aspect_thresh=sampling.ASPECT_THRESH,
            area_ratio_thresh=sampling.AREA_RATIO_THRESH,
            nms_thresh=sampling.NMS_THRESH,
            alpha=sampling.ALPHA,
            base_probability=sampling.BASE_PROBABILITY,
            cutoff_thresh=sampling.CUTOFF_THRESH,
            interval=sampling.INTERVAL,
            max_groups=sampling.MAX_GROUPS,
            max_permutations=sampling.MAX_PERMUTATIONS,
            use_gt=sampling.USE_GT,
        )
        ret["position_embed"] = BoxPositionEmbedding(
            num_feats=baron.POS_EMBED_FEATS,
            num_words=predictor.num_words,
            word_dim=predictor.word_dim,
        )
        ret["bag_loss"] = QueuedInfoNCELoss(
            predictor.text_encoder.output_dim("projected"),  # the bag losses stay projected
            temperature=baron.BAG.TEMPERATURE,
            weight=baron.BAG.WEIGHT,
            queue_size=baron.QUEUE_SIZE,
        )
        if baron.SINGLE.WEIGHT > 0:
            ret["single_loss"] = QueuedInfoNCELoss(
                predictor.text_encoder.output_dim("projected"),
                temperature=baron.SINGLE.TEMPERATURE,
                weight=baron.SINGLE.WEIGHT,
                queue_size=baron.QUEUE_SIZE,
            )
        ret["single_pooler_resolution"] = baron.SINGLE.POOLER_RESOLUTION
        ret["single_tokens"] = baron.SINGLE.TOKENS
        if baron.BOXES_CACHE.ENABLED:  # thresholds from sampling_cfg, as ovdet's baron_kd.py
            ret["boxes_cache"] = BoxesCache(
                start_iter=baron.BOXES_CACHE.START_ITER,
                topk=sampling.TOPK,
                score_thresh=sampling.OBJECTNESS_THRESH,
                nms_thresh=sampling.NMS_THRESH,
            )
        return ret

    @classmethod
    def _build_predictor(
        cls,
        cfg,
        input_shape: ShapeSpec,
        *,
        class_embeddings: Tensor,
        class_names: list[str],
        seen: Tensor,
        teacher_fingerprint: str,
    ) -> BaronOutputLayers:
        encoder = load_baron_text_encoder(cfg, expect_fingerprint=teacher_fingerprint)
        return BaronOutputLayers(
            cfg,
            input_shape,
            class_embeddings=class_embeddings,
            class_names=class_names,
            seen=seen,
            text_encoder=encoder,
        )

    # ------------------------------------------------------------------ teacher
    def set_teacher(self, teacher: OnlineTeacher | TeacherHandle) -> None:
        """Use ``teacher`` for the bag / single-region targets: a built teacher (checked now) or a
        :class:`distill.teachers.TeacherHandle` expecting the text embeddings' fingerprint (built
        and checked on first use). Either way it stays outside the module tree."""
        from distill.teachers.handle import TeacherHandle  # lazy: keeps open_clip out of students

        if isinstance(teacher, TeacherHandle):
            if (teacher.expected_fingerprint or "") != self.teacher_fingerprint:
                raise ValueError(
                    f"BARON's teacher handle expects fingerprint "
                    f"{teacher.expected_fingerprint!r}, {_TEXT_EMBEDDINGS} have "
                    f"{self.teacher_fingerprint!r}: make the handle with "
                    f"expected_fingerprint=roi_heads.teacher_fingerprint"
                )
            self._teacher = teacher
            return
        if not isinstance(teacher, OnlineTeacher):
            raise TypeError(
                f"BARON's teacher needs fingerprint, embed_dim, region_embeddings, dense_embeddings "
                f"and crop_tokens "
                f"(distill.targets.OnlineTeacher), got {type(teacher).__name__}"
            )
        handle = TeacherHandle.wrap(
            teacher, expected_fingerprint=self.teacher_fingerprint, expected_from=_TEXT_EMBEDDINGS
        )
        self._check_embed_dim(teacher)
        self._teacher = handle

    def get_teacher(self) -> OnlineTeacher:
        """The attached teacher (a method, not a property: tracing for export inspects properties, and
        inference needs no teacher)."""
        if self._teacher is None:
            raise ValueError(
                "BARON trains with an online teacher: call model.roi_heads.set_teacher(teacher) "
                "(tools/train_net.py attaches MODEL.VILD.TEACHER)"
            )
        teacher = self._teacher.get()
        self._check_embed_dim(teacher)
        return teacher

    def _check_embed_dim(self, teacher: OnlineTeacher) -> None:
        student_dim = self.box_predictor.text_encoder.output_dim("projected")
        if int(teacher.embed_dim) != student_dim:
            raise ValueError(
                f"BARON teacher embeds in {teacher.embed_dim} dims, the student's text encoder in "
                f"{student_dim}"
            )

    # ------------------------------------------------------------------ forward
    def _image_embed(self, pooled: Tensor) -> Tensor:
        """Ensemble branch: pseudo words of the separate head -> text encoder ``[R, D]``."""
        return self.box_predictor.encode_words(
            self.box_predictor.words(self.image_head(pooled), self.image_projection)
        )

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
        *,
        raw_images: list[Tensor] | None = None,
        image_ids: Sequence[int] | None = None,
        image_transforms: Sequence[Tensor | None] | None = None,
    ):
        if not self.training:
            return super().forward(images, features, proposals)
        if not targets:
            raise ValueError("BaronROIHeads needs targets in training")
        if raw_images is None or image_ids is None or len(raw_images) != len(proposals):
            raise ValueError(
                "BaronROIHeads needs raw_images (uint8 RGB [3, H, W]) and image_ids per image in "
                "training (BaronRCNN passes them)"
            )
        bags = [
            self._sample_bags(p, t, image_id, transform)
            for p, t, image_id, transform in zip(
                proposals, targets, image_ids, image_transforms or [None] * len(proposals)
            )
        ]
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box_train(features, proposals, None)
        losses.update(forward_mask(self, features, proposals))
        losses.update(self._bag_losses(features, bags, raw_images, image_ids))
        return proposals, losses

    def _sample_bags(
        self, proposals: Instances, targets: Instances, image_id: int, transform: Tensor | None
    ) -> Bags:
        """One image's bags; the centre boxes (after the filters and NMS) go through the boxes
        cache first, if any (wusize/ovdet@d74a20c ``baron_kd.py`` ``_sample_on_topk``)."""
        size = proposals.image_size
        centres, scores = self.sampler.select(
            proposals.proposal_boxes.tensor.detach(),
            proposals.objectness_logits.detach(),
            targets.gt_boxes.tensor,
            image_size=size,
        )
        if self.boxes_cache is not None:
            if transform is None:
                raise ValueError(
                    f"image id {image_id!r}: MODEL.BARON.BOXES_CACHE needs the training input's "
                    f"'image_transform' (OVDatasetMapper sets it for resize / flip / crop "
                    f"augmentations)"
                )
            centres, scores = self.boxes_cache.merge(image_id, centres, scores, transform)
        return self.sampler.sample_around(centres, size)

    def _zero_losses(self) -> dict[str, Tensor]:
        zero = sum(p.sum() for p in self._distill_parameters()) * 0.0
        out = {"loss_bag": zero}
        if self.single_loss is not None:
            out["loss_single"] = zero
        return out

    def _distill_parameters(self) -> list[Tensor]:
        return [*super()._distill_parameters(), *self.position_embed.parameters()]

    def _bag_losses(
        self,
        features: dict[str, Tensor],
        bags: list[Bags],
        raw_images: list[Tensor],
        image_ids: Sequence[int],
    ) -> dict[str, Tensor]:
        counts = [b.num_regions for b in bags]
        if sum(counts) < 2:  # the box head's batch norm needs two regions
            return self._zero_losses()
        predictor = self.box_predictor
        pooled = self.box_pooler(
            [features[f] for f in self.box_in_features], [Boxes(b.boxes) for b in bags]
        )
        if self.image_head is not None:
            words = predictor.words(self.image_head(pooled), self.image_projection)
        else:
            words = predictor.words(self.box_head(pooled))
        normed = torch.cat([b.normed_boxes for b in bags])
        words = words + self.position_embed(normed)
        keep = predictor.word_mask(words.shape[0], words.device)
        lengths = torch.cat([b.seq_lengths for b in bags])
        seq_words, seq_valid, seq_of_region, slot = pack_sequences(words, keep, lengths)
        student, tokens, positions = predictor.text_encoder.forward_tokens(
            seq_words,
            valid=seq_valid,
            token_path="eot_value" if self.single_tokens == "bag_crop" else "causal",
        )

        device = student.device
        seq_counts = [int(b.seq_lengths.numel()) for b in bags]
        ids = torch.as_tensor([int(i) for i in image_ids], device=device)
        with torch.no_grad():
            teacher_bags = self.get_teacher().region_embeddings(
                raw_images, [b.bag_boxes.detach() for b in bags], mode="crop", scales=(1.0,)
            )
        offsets = torch.cumsum(
            torch.tensor([0] + [b.bag_boxes.shape[0] for b in bags[:-1]]), 0
        ).tolist()
        teacher = torch.cat([t.to(device).float()[b.seq_bag] for t, b in zip(teacher_bags, bags)])
        group_ids = torch.cat([b.seq_bag + o for b, o in zip(bags, offsets)])
        seq_image = torch.repeat_interleave(ids, torch.tensor(seq_counts, device=device))
        losses = {
            "loss_bag": self.bag_loss(student, teacher, image_ids=seq_image, group_ids=group_ids)
        }
        if self.single_loss is not None:
            region_words = self._region_word_features(tokens, positions, seq_of_region, slot)
            targets = self._teacher_region_tokens(raw_images, bags).to(device)
            region_image = torch.repeat_interleave(ids, torch.tensor(counts, device=device))
            # copies of one (image, centre, cell) region are not each other's negatives (ovdet's
            # box_ids); without this every row's loss has a floor of log(#copies)
            losses["loss_single"] = self.single_loss(
                region_words,
                targets,
                image_ids=region_image,
                group_ids=single_region_ids(bags).to(device),
            )
        return losses

    def _region_word_features(
        self, tokens: Tensor, positions: Tensor, seq_of_region: Tensor, slot: Tensor
    ) -> Tensor:
        """``[R, D]``: normalized mean of the tokens ``[S, T, D]`` at each region's kept words.

        ``"bag_crop"``: the raw projected tokens are averaged (ovdet ``baron_kd.py``:
        ``feat.mean(0)`` of ``encode_pseudo_text``'s unnormalized word tokens); ``"dense_image"``
        (old): each token is normalized first."""
        if self.single_tokens == "dense_image":
            tokens = F.normalize(tokens, dim=-1)
        per = self.box_predictor.num_words
        pos = positions.view(positions.shape[0], -1, per)[seq_of_region, slot]  # [R, W]
        gathered = tokens[seq_of_region[:, None], pos.clamp(min=0)]  # [R, W, D]
        weight = (pos >= 0).to(gathered.dtype)[..., None]
        return F.normalize((gathered * weight).sum(1) / weight.sum(1).clamp(min=1.0), dim=-1)

    @torch.no_grad()
    def _teacher_region_tokens(self, raw_images: list[Tensor], bags: list[Bags]) -> Tensor:
        """``[R, D]`` normalized teacher tokens of every region (``single_tokens``)."""
        if self.single_tokens == "bag_crop":
            return self._bag_crop_region_tokens(raw_images, bags)
        out = []
        for image, bag in zip(raw_images, bags):
            dense = self.get_teacher().dense_embeddings(image[None]).float()
            scale = dense.shape[-1] / image.shape[-1]
            out.append(
                roi_embed(
                    dense,
                    [bag.boxes.detach().to(dense.device)],
                    output_size=self.single_pooler_resolution,
                    spatial_scale=scale,
                    sampling_ratio=0,
                    aligned=True,
                    normalize=True,
                )
            )
        return torch.cat(out)

    @torch.no_grad()
    def _bag_crop_region_tokens(self, raw_images: list[Tensor], bags: list[Bags]) -> Tensor:
        """``[R, D]``: the teacher's tokens of each region's bag crop, RoI-aligned 1x1 (sampling 2,
        aligned) on the region's in-bag box scaled to the token grid, normalized
        (wusize/ovdet@d74a20c ``baron_kd.py``: ``roi_align(clip_image_tokens, normed_boxes, (1, 1),
        grid, 2, 'avg', True)``)."""
        maps = self.get_teacher().crop_tokens(raw_images, [b.bag_boxes.detach() for b in bags])
        out = []
        for tokens, bag in zip(maps, bags):
            tokens = tokens.float()
            height, width = tokens.shape[-2:]
            region_bag = torch.repeat_interleave(bag.seq_bag, bag.seq_lengths).to(tokens.device)
            scale = torch.tensor([width, height, width, height], device=tokens.device)
            boxes = bag.normed_boxes.detach().to(tokens.device).float() * scale
            out.append(
                roi_embed(
                    tokens,
                    torch.cat([region_bag[:, None].float(), boxes], dim=1),
                    output_size=1,
                    spatial_scale=1.0,
                    sampling_ratio=2,
                    aligned=True,
                    normalize=True,
                )
            )
        return torch.cat(out)
