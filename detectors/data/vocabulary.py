"""The vocabularies of a detector run, resolved on the data side: from Detectron2's dataset catalog
and the classifier file (``MODEL.VILD.TEXT_EMBEDDINGS``), so that the model reads only its config
and that file.

* :func:`resolve_training_classes`: the training vocabulary (``MODEL.VILD.CLASSES.NAMES / SEEN``)
  the model is built with, from the metadata of ``DATASETS.TRAIN``;
* :func:`class_table`: names and synonyms of every train / test class, plus
  ``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES`` (what the classifier file must cover);
* :func:`extra_test_classes`: the extra test-time classes, checked against the test datasets;
* :func:`dataset_vocabulary`: a test dataset's classes + the extra ones and their classifier rows
  (evaluation);
* :func:`read_classifier`: the one reader of the classifier file outside the model (memoized per
  file version, so a run reads it once).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from detectron2.config import CfgNode
from torch import Tensor

from distill.vocab import ClassifierFile, normalize_name, validate_class_names

from .datasets import get_ov_metadata

__all__ = [
    "read_classifier",
    "class_table",
    "training_classes",
    "resolve_training_classes",
    "extra_test_classes",
    "dataset_vocabulary",
]

_EXTRA_KEY = "MODEL.VILD.CLASSES.TEST_EXTRA_NAMES"


@functools.lru_cache(maxsize=8)
def _read_version(path: str, size: int, mtime_ns: int) -> ClassifierFile:
    del size, mtime_ns  # cache key only: a rewritten file is read again
    return ClassifierFile.load(path)


def read_classifier(path: str | os.PathLike) -> ClassifierFile:
    """The classifier file ``path`` (names, embeddings ``[N, D]``, teacher fingerprint), read once
    per file version. ``FileNotFoundError`` / ``ValueError`` name the file."""
    path = Path(path)
    if not path.is_file():
        return ClassifierFile.load(path)  # raises the error naming the file and the config key
    stat = path.stat()
    return _read_version(str(path), stat.st_size, stat.st_mtime_ns)


def class_table(cfg: CfgNode) -> tuple[list[str], list[list[str]]]:
    """Names and synonym lists of every class of DATASETS.TRAIN and DATASETS.TEST, then the names
    of ``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES`` (each its own only synonym; deduplicated by
    :func:`distill.vocab.normalize_name`, first occurrence kept)."""
    names, synonyms, seen = [], [], set()
    for dataset in [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]:
        meta = get_ov_metadata(dataset)
        for name, syns in zip(meta.thing_classes, meta.thing_synonyms):
            if normalize_name(name) not in seen:
                seen.add(normalize_name(name))
                names.append(name)
                synonyms.append(list(syns))
    for name in extra_test_classes(cfg):
        if normalize_name(name) not in seen:
            seen.add(normalize_name(name))
            names.append(name)
            synonyms.append([name])
    return names, synonyms


def extra_test_classes(cfg: CfgNode) -> list[str]:
    """``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES``: class names scored at test time besides each test
    dataset's classes, whose detections the evaluator drops (BARON's OV-COCO test scores the 80
    COCO classes, wusize/ovdet@d74a20c ``coco_clip_hand_craft_attn12.npy``; the metrics cover
    OV-COCO's 65). ``ValueError`` naming the key for duplicates, empty names, or a name that is
    already a class of a DATASETS.TEST set."""
    extra = list(cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES)
    if not extra:
        return []
    validate_class_names(extra, field=_EXTRA_KEY)
    for dataset in cfg.DATASETS.TEST:
        classes = {normalize_name(n) for n in get_ov_metadata(dataset).thing_classes}
        clash = [n for n in extra if normalize_name(n) in classes]
        if clash:
            raise ValueError(
                f"{_EXTRA_KEY}: {clash} are classes of test dataset {dataset!r} already; "
                f"list only classes outside the test datasets"
            )
    return extra


def training_classes(cfg: CfgNode) -> tuple[list[str], list[bool]]:
    """``(names, seen)`` of DATASETS.TRAIN from the catalog: the class names in contiguous order
    (the training datasets' must agree) and whether each is trained on (a ``base`` class; novel /
    LVIS-rare classes never enter the training softmax)."""
    if not cfg.DATASETS.TRAIN:
        raise ValueError("DATASETS.TRAIN is empty: the training vocabulary comes from its metadata")
    metas = [get_ov_metadata(name) for name in cfg.DATASETS.TRAIN]
    names, roles = list(metas[0].thing_classes), list(metas[0].class_roles)
    for name, meta in zip(cfg.DATASETS.TRAIN[1:], metas[1:]):
        if list(meta.thing_classes) != names:
            raise ValueError(
                f"training datasets {cfg.DATASETS.TRAIN[0]!r} and {name!r} have "
                f"different class lists"
            )
    seen = [role == "base" for role in roles]
    if not any(seen):
        raise ValueError(f"training dataset {cfg.DATASETS.TRAIN[0]!r} has no base class")
    return names, seen


def resolve_training_classes(cfg: CfgNode) -> CfgNode:
    """A clone of ``cfg`` with ``MODEL.VILD.CLASSES.NAMES / SEEN`` from :func:`training_classes`.

    Keys already set (a run's resolved ``config.yaml``) must equal the catalog's: ``ValueError``
    naming the keys and the dataset otherwise.
    """
    names, seen = training_classes(cfg)
    given = cfg.MODEL.VILD.CLASSES
    stated = (list(given.NAMES), [bool(s) for s in given.SEEN])
    if (given.NAMES or given.SEEN) and stated != (names, seen):
        raise ValueError(
            f"MODEL.VILD.CLASSES.NAMES / SEEN ({len(given.NAMES)} names) differ from "
            f"the classes of DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)} "
            f"({len(names)} names); leave both keys empty to resolve them from the "
            f"dataset"
        )
    resolved = cfg.clone()
    resolved.defrost()
    resolved.MODEL.VILD.CLASSES.NAMES = names
    resolved.MODEL.VILD.CLASSES.SEEN = seen
    return resolved


def dataset_vocabulary(cfg: CfgNode, dataset_name: str) -> tuple[Tensor, list[str]]:
    """``(text embeddings [C + E, D], names)`` of a registered dataset's ``C`` classes followed by
    the ``E`` names of ``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES`` (:func:`extra_test_classes`), rows
    of ``MODEL.VILD.TEXT_EMBEDDINGS``. Class index ``i < C`` is the dataset's contiguous id ``i``.

    Raises ``KeyError`` naming the classifier file, the key and the missing extra names.
    """
    path = cfg.MODEL.VILD.TEXT_EMBEDDINGS
    classifier = read_classifier(path)
    names = list(get_ov_metadata(dataset_name).thing_classes)
    extra = extra_test_classes(cfg)
    known = {normalize_name(n) for n in classifier.names}
    missing = [n for n in extra if normalize_name(n) not in known]
    if missing:
        raise KeyError(
            f"text classifier {path} (MODEL.VILD.TEXT_EMBEDDINGS) lacks the {_EXTRA_KEY} names "
            f"{missing}; recompute it (the preparation step encodes the extra names too)"
        )
    names += extra
    return classifier.select(names), names
