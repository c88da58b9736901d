"""Teacher region targets of a student: the ``RegionTargetProvider`` interface, its two providers.

A provider maps an image id to the regions the student must imitate and the teacher's embeddings of
them. Detection data loaders (``detectors.data.OVDatasetMapper``) call ``provider.get(image_id)`` for
every training image, transform the boxes with the image's augmentation and attach them to the
dataset dict; ViLD's L1 distillation, and later methods, read them from there. Two providers ship:

* :class:`CachedRegionTargets` reads a precomputed :class:`distill.cache.EmbeddingStore` (fast; the
  ViLD recipe);
* :class:`OnlineRegionTargets` runs a teacher's ``region_embeddings`` on demand (slow; for small
  experiments or teachers that change).

Online methods (BARON) instead receive an :class:`OnlineTeacher` that embeds crops and dense tokens of
the augmented training images inside the training step.

Both providers expose ``fingerprint`` (the teacher's, checked against the text classifier's so that a cache
made by another teacher is refused) and ``embed_dim``. Framework-free: no Detectron2 import.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import (
    Any,
    NamedTuple,
    Protocol,
    runtime_checkable,
)

import numpy as np
import torch

from distill.cache.regions import Proposals, image_regions, load_proposals
from distill.cache.store import EmbeddingStore
from distill.data import decode_image, read_image_records
from distill.vocab import check_teacher_fingerprint

__all__ = [
    "RegionTargets",
    "RegionTargetProvider",
    "CachedRegionTargets",
    "OnlineRegionTargets",
    "check_region_targets",
    "ON_MISSING",
    "OnlineTeacher",
]

logger = logging.getLogger(__name__)

ON_MISSING = ("error", "skip")
"""What a provider does for an image it has no targets for: raise, or return zero regions."""


class RegionTargets(NamedTuple):
    """Teacher targets of one image.

    Attributes:
        boxes: float32 ``[K, 4]`` absolute xyxy boxes in the coordinates of the original image file.
        embeddings: float32 ``[K, D]`` L2-normalized teacher embeddings of those boxes.
    """

    boxes: np.ndarray
    embeddings: np.ndarray


@runtime_checkable
class RegionTargetProvider(Protocol):
    """Anything with ``get(image_id) -> RegionTargets``, ``fingerprint`` and ``embed_dim``."""

    fingerprint: str
    embed_dim: int

    def get(self, image_id: Hashable) -> RegionTargets:
        """Boxes ``[K, 4]`` (original image coordinates) and embeddings ``[K, D]`` of ``image_id``."""
        ...


@runtime_checkable
class OnlineTeacher(Protocol):
    """What an online method (BARON) asks of its teacher in training (``distill.teachers.ClipTeacher``
    has it): crop embeddings of boxes, dense patch-token embeddings and token maps of crops, all on
    uint8 RGB images."""

    fingerprint: str
    embed_dim: int

    def region_embeddings(
        self, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], **kwargs: Any
    ) -> list[torch.Tensor]:
        """Per image ``[K_i, D]`` normalized embeddings of crops of its ``[K_i, 4]`` xyxy boxes."""
        ...

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, D, h, w]`` dense (patch-token) embeddings of uint8 RGB ``[B, 3, H, W]`` images."""
        ...

    def crop_tokens(
        self, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], **kwargs: Any
    ) -> list[torch.Tensor]:
        """Per image ``[K_i, D, h, w]`` token maps of crops of its boxes (BARON's single-region
        targets; ``ClipTeacher.crop_tokens``)."""
        ...


def check_region_targets(
    boxes: Any,
    embeddings: Any,
    *,
    image_id: Hashable,
    embed_dim: int,
    source: str = "region targets",
) -> RegionTargets:
    """Validate and convert one image's targets to float32 numpy arrays.

    Raises:
        ValueError: wrong shapes, a box/embedding count mismatch, an embedding size other than
            ``embed_dim`` or non-finite values, naming ``image_id`` and ``source``.
    """
    boxes = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float32)
    embeddings = np.asarray(
        embeddings.float().cpu() if isinstance(embeddings, torch.Tensor) else embeddings,
        dtype=np.float32,
    )
    where = f"{source}: image id {image_id!r}"
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must be [K, 4], got {list(boxes.shape)}")
    if embeddings.ndim != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(
            f"{where}: embeddings must be [K, {embed_dim}], got {list(embeddings.shape)}"
        )
    if len(boxes) != len(embeddings):
        raise ValueError(f"{where}: {len(boxes)} boxes but {len(embeddings)} embeddings")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{where}: non-finite box coordinates")
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{where}: non-finite embeddings")
    return RegionTargets(boxes, embeddings)


class _MissingPolicy:
    """Shared ``on_missing`` handling: raise, or return empty targets (logged once per provider)."""

    def __init__(self, on_missing: str, embed_dim: int, label: str) -> None:
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        self.on_missing = on_missing
        self._embed_dim = embed_dim
        self._label = label
        self._warned = False

    def empty(self, image_id: Hashable, reason: str) -> RegionTargets:
        if self.on_missing == "error":
            raise KeyError(
                f"{self._label}: no region targets for image id {image_id!r} ({reason}); set "
                f"on_missing='skip' (MODEL.VILD.DISTILL.ON_MISSING skip) to train such images "
                f"without distillation"
            )
        if not self._warned:
            logger.warning(
                "%s: no region targets for image id %r (%s); such images get no distillation "
                "loss (on_missing='skip'; logged once)",
                self._label,
                image_id,
                reason,
            )
            self._warned = True
        return RegionTargets(
            np.zeros((0, 4), np.float32), np.zeros((0, self._embed_dim), np.float32)
        )


class CachedRegionTargets:
    """Targets read from a precomputed :class:`distill.cache.EmbeddingStore`.

    Args:
        store: an open store or its directory.
        expect_fingerprint: teacher fingerprint the store must have been made with (e.g. the text
            classifier's); a different one raises ValueError
            (:func:`distill.vocab.check_teacher_fingerprint`).
        expect_embed_dim: embedding size the student expects.
        on_missing: ``"error"`` (KeyError naming the image) or ``"skip"`` (zero regions, logged once).
    """

    def __init__(
        self,
        store: Any,
        *,
        expect_fingerprint: str | None = None,
        expect_embed_dim: int | None = None,
        on_missing: str = "error",
    ) -> None:
        self.store = store if isinstance(store, EmbeddingStore) else EmbeddingStore.open(store)
        manifest = self.store.manifest
        self.fingerprint = str(manifest.get("teacher_fingerprint", ""))
        self.embed_dim = int(self.store.embed_dim)
        check_teacher_fingerprint(
            expect_fingerprint,
            self.fingerprint,
            what=f"embedding cache {self.store.path} (teacher {manifest.get('teacher')!r})",
            source="the text classifier",
            fix="recompute the cache with the same teacher (or point MODEL.VILD.DISTILL.CACHE at "
            "an empty directory)",
        )
        if expect_embed_dim is not None and self.embed_dim != int(expect_embed_dim):
            raise ValueError(
                f"embedding cache {self.store.path} holds {self.embed_dim}-d embeddings, the student "
                f"expects {expect_embed_dim}"
            )
        self._missing = _MissingPolicy(
            on_missing, self.embed_dim, f"embedding cache {self.store.path}"
        )

    @property
    def on_missing(self) -> str:
        return self._missing.on_missing

    def __contains__(self, image_id: Hashable) -> bool:
        return image_id in self.store

    def check_coverage(self, image_ids: Iterable[Hashable], *, dataset: str = "dataset") -> list:
        """The ids of ``image_ids`` the cache lacks; raises ValueError for ``on_missing='error'``.

        With ``"skip"``, logs one warning with the count and returns them.
        """
        image_ids = list(image_ids)
        missing = self.store.missing(image_ids)
        if missing and self.on_missing == "error":
            raise ValueError(
                f"embedding cache {self.store.path} lacks {len(missing)} of the {len(image_ids)} images "
                f"of {dataset} (first ids: {missing[:10]}); it was made for another dataset or an "
                f"interrupted precompute; rerun the precompute, or set "
                f"MODEL.VILD.DISTILL.ON_MISSING skip to train them without distillation"
            )
        if missing:
            logger.warning(
                "embedding cache %s lacks %d of the %d images of %s (first ids: %s); they get no "
                "distillation loss (on_missing='skip')",
                self.store.path,
                len(missing),
                len(image_ids),
                dataset,
                missing[:10],
            )
        return missing

    def get(self, image_id: Hashable) -> RegionTargets:
        if image_id not in self.store:
            return self._missing.empty(image_id, "not in the cache")
        boxes, embeddings = self.store.get(image_id)
        return check_region_targets(
            boxes,
            embeddings,
            image_id=image_id,
            embed_dim=self.embed_dim,
            source=f"embedding cache {self.store.path}",
        )

    def __repr__(self) -> str:
        return f"CachedRegionTargets({self.store!r}, on_missing={self.on_missing!r})"


BoxSource = Callable[[Hashable], "tuple[str | os.PathLike, np.ndarray] | None"]


class OnlineRegionTargets:
    """Targets computed on demand with a teacher's ``region_embeddings``.

    Args:
        teacher: has ``region_embeddings(images, boxes, mode=, scales=) -> list[[K, D]]``,
            ``fingerprint`` and ``embed_dim`` (``distill.teachers.ClipTeacher``).
        regions: ``image_id -> (image file, boxes [K, 4] xyxy)`` as a mapping or a callable returning
            None for unknown images; see :meth:`from_coco_json`.
        mode, scales: passed to ``region_embeddings`` (ViLD: ``"crop"``, ``(1.0, 1.5)``).
        memoize: keep up to this many images' targets in memory (LRU; 0 disables).
        on_missing: for images ``regions`` does not know.

    Teacher calls run under ``torch.no_grad``; with DataLoader workers each worker holds a copy of the
    teacher, so prefer ``num_workers=0`` or a CPU teacher.
    """

    def __init__(
        self,
        teacher: Any,
        regions: Mapping[Hashable, tuple] | BoxSource,
        *,
        mode: str = "crop",
        scales: Sequence[float] = (1.0, 1.5),
        memoize: int = 4096,
        on_missing: str = "error",
    ) -> None:
        self.teacher = teacher
        self.fingerprint = str(teacher.fingerprint)
        self.embed_dim = int(teacher.embed_dim)
        self.mode = mode
        self.scales = tuple(float(s) for s in scales)
        self._regions = regions
        self._memo: OrderedDict[str, RegionTargets] = OrderedDict()
        self._memo_size = int(memoize)
        self._missing = _MissingPolicy(
            on_missing, self.embed_dim, f"online targets ({type(teacher).__name__})"
        )

    @classmethod
    def from_coco_json(
        cls,
        teacher: Any,
        dataset_json: str | os.PathLike,
        image_root: str | os.PathLike,
        *,
        proposals: str | os.PathLike | None = None,
        max_per_image: int = 300,
        **kwargs: Any,
    ) -> OnlineRegionTargets:
        """Regions of a COCO/LVIS-format dataset (:func:`distill.data.read_image_records`: image
        files from ``file_name`` or LVIS ``coco_url``): its ground-truth boxes, or the top
        ``max_per_image`` proposals of a Detectron2-format proposal file
        (:func:`distill.cache.regions.image_regions`: boxes clipped, degenerate ones dropped)."""
        props: Proposals | None = load_proposals(proposals) if proposals is not None else None
        table: dict[Hashable, tuple[Path, np.ndarray]] = {}
        for record in read_image_records(dataset_json, image_root):
            if record.width is None or record.height is None:
                raise ValueError(f"{dataset_json}: image id {record.image_id!r} lacks width/height")
            boxes, _ = image_regions(
                record,
                proposals=props,
                max_per_image=max_per_image,
                width=record.width,
                height=record.height,
            )
            table[record.image_id] = (record.file, boxes)
        return cls(teacher, table, **kwargs)

    @property
    def on_missing(self) -> str:
        return self._missing.on_missing

    def _lookup(self, image_id: Hashable) -> tuple | None:
        if callable(self._regions) and not isinstance(self._regions, Mapping):
            return self._regions(image_id)
        return self._regions.get(image_id)

    def get(self, image_id: Hashable) -> RegionTargets:
        key = str(image_id)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        entry = self._lookup(image_id)
        if entry is None:
            return self._missing.empty(image_id, "no regions known for it")
        path, boxes = entry
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes):
            pixels = decode_image(path, image_id=image_id)  # [H, W, 3] uint8 RGB
            image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
            with torch.no_grad():
                emb = self.teacher.region_embeddings(
                    [image], [torch.from_numpy(boxes)], mode=self.mode, scales=self.scales
                )[0]
        else:
            emb = np.zeros((0, self.embed_dim), np.float32)
        targets = check_region_targets(
            boxes, emb, image_id=image_id, embed_dim=self.embed_dim, source="online region targets"
        )
        if self._memo_size > 0:
            self._memo[key] = targets
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return targets
