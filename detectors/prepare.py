"""Everything a detector run reads, prepared in one ordered pass: ``prepare_resources(cfg) -> cfg``.

``tools/train_net.py`` (and ``OVPredictor``, for inference) calls it once; it returns a resolved
clone of the config whose empty keys are filled with cache locations
(``distill.utils.cache_dir("vild", ...)``), computing what is missing:

1. toy datasets ``toy_train_base`` / ``toy_val``: the toy world generated and registered;
2. ``MODEL.VILD.CLASSES``: the training vocabulary, from the metadata of DATASETS.TRAIN
   (``detectors.data.resolve_training_classes``);
3. ``MODEL.VILD.TEXT_EMBEDDINGS``: ``teacher.text_classifier(synonyms of every train/test
   class, and the names of MODEL.VILD.CLASSES.TEST_EXTRA_NAMES)`` (``detectors.data.class_table``);
   for training an existing file must cover them (read here, once, by
   ``detectors.data.read_classifier``);
4. BARON: ``MODEL.BARON.TEXT_ENCODER``, the teacher's text tower as a pseudo-word encoder
   (``distill.teachers.text_tower``); its teacher runs online in training (``detectors.teacher``);
5. ViLD with distillation: ``MODEL.VILD.DISTILL.CACHE``
   (``distill.cache.precompute_region_embeddings``, resumable; with ``SOURCE gt`` on a base-only
   training set only base-class boxes are embedded), unless ``ONLINE``. With ``SOURCE
   proposals`` the regions are ``MODEL.VILD.DISTILL.PROPOSALS``, the proposals of the trained RPN
   of ``PROPOSAL_CONFIG`` (``detectors.proposals.proposal_file``), made when the cache must be
   computed or the targets are online.

Each step is a function returning its path; only :func:`prepare_resources` writes the config. A
step whose output exists is skipped, so a second run (or ``--eval-only``) reuses them; the teacher
is built at most once, and only when something must be computed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectron2.config import CfgNode

from distill.cache import EmbeddingStore, precompute_region_embeddings
from distill.teachers.text import text_classifier_in_space
from distill.teachers.text_tower import export_text_encoder
from distill.text_encoder import save_text_encoder
from distill.utils import cache_dir, file_key, sha256_json
from distill.vocab import ClassifierFile
from distill.vocab.classifier import TEXT_SPACE_KEY

from .comm import main_process_first
from .config import classifier_text_space
from .data import (
    class_table,
    get_ov_metadata,
    read_classifier,
    regions_json,
    resolve_training_classes,
)
from .data.toy import setup_toy_datasets
from .proposals import proposal_file
from .teacher import build_teacher_from_cfg

__all__ = [
    "STAGES",
    "prepare_resources",
    "text_classifier_file",
    "text_encoder_file",
    "usable_region_cache",
    "region_cache_dir",
]

logger = logging.getLogger(__name__)

STAGES = ("train", "inference", "exported")
"""What the resources are for: training (every step), building the eager model for inference
(steps 1-4), or running an exported file (steps 1 and 3: the classifier file is the vocabulary's
reference)."""

Teacher = Callable[[], Any]


def text_classifier_file(cfg: CfgNode, teacher: Teacher, *, check_coverage: bool = True) -> str:
    """``MODEL.VILD.TEXT_EMBEDDINGS`` when it exists (with ``check_coverage``: it must cover every
    train/test class and every ``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES`` name, ``KeyError`` naming the
    missing ones), else computed with ``teacher()``
    (prompt ensemble ``MODEL.VILD.TEACHER.TEMPLATES``) into the given path or a cache path keyed by
    teacher fingerprint, templates, classes and the model's text space
    (``detectors.config.classifier_text_space``, recorded in the file)."""
    path = cfg.MODEL.VILD.TEXT_EMBEDDINGS
    space = classifier_text_space(cfg)
    if path and Path(path).is_file():
        if check_coverage:
            read_classifier(path).select(class_table(cfg)[0])
        return path
    names, synonyms = class_table(cfg)

    def compute() -> str:
        model = teacher()
        fields = [cfg.MODEL.VILD.TEACHER.TEMPLATES, names, synonyms]
        key = sha256_json(fields if space == "projected" else [*fields, space])[:12]
        name = f"{str(model.fingerprint)[:16]}-{key}.pt"
        target = path or str(cache_dir("vild", "text_embeddings", name))
        if not Path(target).is_file():
            embeddings = text_classifier_in_space(
                model, synonyms, templates=cfg.MODEL.VILD.TEACHER.TEMPLATES, space=space
            )
            table = ClassifierFile.from_embeddings(
                names,
                embeddings,
                teacher_fingerprint=model.fingerprint,
                provenance={TEXT_SPACE_KEY: space},
                source=target,
            )
            table.save(target)
            logger.info("text classifier of %d classes -> %s", len(names), target)
        return target

    return main_process_first(compute)


def text_encoder_file(cfg: CfgNode, teacher: Teacher) -> str:
    """``MODEL.BARON.TEXT_ENCODER`` as given when it exists (its teacher is checked when the model
    is built), else the teacher's text tower exported to it or to a cache path keyed by the
    teacher."""
    path = cfg.MODEL.BARON.TEXT_ENCODER
    if path and Path(path).is_file():
        return path

    def compute() -> str:
        model = teacher()
        name = f"{str(model.fingerprint)[:24]}.pt"
        target = path or str(cache_dir("baron", "text_encoders", name))
        if not Path(target).is_file():
            save_text_encoder(
                target, export_text_encoder(model), teacher_fingerprint=model.fingerprint
            )
            logger.info("pseudo-word text encoder of %s -> %s", cfg.MODEL.VILD.TEACHER.NAME, target)
        return target

    return main_process_first(compute)


def usable_region_cache(cfg: CfgNode) -> str | None:
    """``MODEL.VILD.DISTILL.CACHE`` when it is a complete embedding store (its teacher is checked
    when training starts), else None."""
    path = cfg.MODEL.VILD.DISTILL.CACHE
    if not path:
        return None
    try:
        EmbeddingStore.open(path)
        return path
    except (FileNotFoundError, ValueError) as err:
        logger.info("region cache %s not usable yet (%s): computing it", path, err)
        return None


def region_cache_dir(
    cfg: CfgNode, teacher: Teacher, *, proposals: str | None, fingerprint: str
) -> str:
    """A complete embedding store of the training set's regions (``proposals``' top boxes, or the
    ground truth of :func:`detectors.data.regions_json`) at ``MODEL.VILD.DISTILL.CACHE`` or a
    cache path keyed by the settings and the classifier's teacher ``fingerprint``; computed with
    ``teacher()`` by ``distill.cache.precompute_region_embeddings``, which resumes finished shards
    and refuses to mix a different teacher's embeddings into an existing store."""
    distill = cfg.MODEL.VILD.DISTILL
    train_name = cfg.DATASETS.TRAIN[0]
    meta = get_ov_metadata(train_name)
    settings = [
        file_key(meta.json_file),
        proposals and file_key(proposals),
        distill.SOURCE,
        distill.MAX_PER_IMAGE,
        distill.MODE,
        list(distill.SCALES),
        fingerprint,
    ]
    name = f"{train_name}-{fingerprint[:12]}-{sha256_json(settings)[:12]}"
    path = distill.CACHE or str(cache_dir("vild", "regions", name))

    def compute() -> str:
        try:
            EmbeddingStore.open(path)
            return path
        except (FileNotFoundError, ValueError):
            pass
        precompute_region_embeddings(
            teacher(),
            regions_json(cfg),
            meta.image_root,
            path,
            proposals=proposals,
            source=distill.SOURCE,
            max_per_image=distill.MAX_PER_IMAGE,
            mode=distill.MODE,
            scales=tuple(distill.SCALES),
            rank=0,
            world_size=1,
        )
        return path

    return main_process_first(compute)


def prepare_resources(cfg: CfgNode, *, stage: str = "train") -> CfgNode:
    """The steps of the module docstring for ``stage`` (one of :data:`STAGES`), in order; returns a
    resolved clone of ``cfg`` (``cfg`` itself is not modified)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    cfg = cfg.clone()
    cfg.defrost()
    world = setup_toy_datasets(cfg)
    architecture = cfg.MODEL.META_ARCHITECTURE
    if architecture not in ("ViLDRCNN", "BaronRCNN"):
        return cfg
    if stage != "exported":
        cfg = resolve_training_classes(cfg)
    teacher = functools.lru_cache(maxsize=1)(lambda: build_teacher_from_cfg(cfg, world=world))
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = text_classifier_file(
        cfg, teacher, check_coverage=stage == "train"
    )
    if architecture == "BaronRCNN" and stage != "exported":
        cfg.MODEL.BARON.TEXT_ENCODER = text_encoder_file(cfg, teacher)
    distill = cfg.MODEL.VILD.DISTILL
    if stage != "train" or architecture != "ViLDRCNN" or not distill.ENABLED:
        return cfg
    if not distill.ONLINE and usable_region_cache(cfg) is not None:
        return cfg
    proposals = proposal_file(cfg) if distill.SOURCE == "proposals" else None
    if proposals is not None:
        distill.PROPOSALS = proposals
    if not distill.ONLINE:
        fingerprint = read_classifier(cfg.MODEL.VILD.TEXT_EMBEDDINGS).teacher_fingerprint
        distill.CACHE = region_cache_dir(cfg, teacher, proposals=proposals, fingerprint=fingerprint)
    return cfg
