"""Teacher region targets of the training set (ViLD-image): the json whose regions are embedded and
the provider the data mapper reads (``distill.targets``), cached or computed online."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detectron2.config import CfgNode

from distill.targets import CachedRegionTargets, OnlineRegionTargets
from distill.utils import cache_dir, file_key, sha256_json
from distill.vocab import ClassifierFile, make_base_only_json

from .datasets import get_ov_metadata

__all__ = ["regions_json", "cached_region_targets", "online_region_targets"]


def regions_json(cfg: CfgNode) -> str:
    """The json whose images (and, for ``SOURCE gt``, boxes) get teacher embeddings: the training
    set's, made base-only first (cached) when the training set is, since ground-truth regions must
    never include novel objects."""
    train_name = cfg.DATASETS.TRAIN[0]
    meta = get_ov_metadata(train_name)
    if cfg.MODEL.VILD.DISTILL.SOURCE != "gt" or not meta.get("base_only", False):
        return meta.json_file
    key = sha256_json([file_key(meta.json_file), sorted(meta.base_class_ids)])[:12]
    path = cache_dir("vild", "base_only", f"{train_name}-{key}.json")
    if not path.is_file():
        make_base_only_json(meta.json_file, path, keep_category_ids=meta.base_class_ids)
    return str(path)


def cached_region_targets(
    cfg: CfgNode, dataset_dicts: Sequence[dict], *, classifier: ClassifierFile
) -> CachedRegionTargets:
    """``CachedRegionTargets(MODEL.VILD.DISTILL.CACHE)``, checked against ``classifier``'s teacher
    fingerprint and embedding size, and for coverage of every image of ``dataset_dicts``
    (``MODEL.VILD.DISTILL.ON_MISSING``)."""
    distill = cfg.MODEL.VILD.DISTILL
    if not distill.CACHE:
        raise ValueError(
            "MODEL.VILD.DISTILL.CACHE is empty: point it at an embedding store, or "
            "run tools/train_net.py, which precomputes one"
        )
    targets = CachedRegionTargets(
        distill.CACHE,
        expect_fingerprint=classifier.teacher_fingerprint,
        expect_embed_dim=classifier.embed_dim,
        on_missing=distill.ON_MISSING,
    )
    targets.check_coverage([d["image_id"] for d in dataset_dicts], dataset=cfg.DATASETS.TRAIN[0])
    return targets


def online_region_targets(cfg: CfgNode, teacher: Any) -> OnlineRegionTargets:
    """``OnlineRegionTargets`` over the training set with ``teacher`` (``DISTILL.ONLINE``): regions
    of :func:`regions_json`, or of ``MODEL.VILD.DISTILL.PROPOSALS`` for ``SOURCE proposals``."""
    distill = cfg.MODEL.VILD.DISTILL
    proposals = None
    if distill.SOURCE == "proposals":
        if not distill.PROPOSALS:
            raise ValueError(
                "MODEL.VILD.DISTILL.PROPOSALS is empty (SOURCE proposals, ONLINE): "
                "set a proposal file, or run tools/train_net.py, which trains "
                "PROPOSAL_CONFIG and dumps its proposals"
            )
        proposals = distill.PROPOSALS
    meta = get_ov_metadata(cfg.DATASETS.TRAIN[0])
    return OnlineRegionTargets.from_coco_json(
        teacher,
        regions_json(cfg),
        meta.image_root,
        proposals=proposals,
        max_per_image=distill.MAX_PER_IMAGE,
        mode=distill.MODE,
        scales=tuple(distill.SCALES),
        on_missing=distill.ON_MISSING,
    )
