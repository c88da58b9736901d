"""Every use of a private (``_``-prefixed) Detectron2 member by ``detectors``, behind one version
check.

Detectron2 makes no promise about its private members; ovdistill pins Detectron2 0.6
(``env/requirements.txt``), whose internals these functions were written against. Each one first
calls :func:`require_pinned_detectron2`, so another version fails with one clear error naming the
member instead of a wrong result or an ``AttributeError`` deep inside training. No other module of
``detectors`` touches a private Detectron2 member (``tests/test_imports.py`` checks it).
"""

from __future__ import annotations

import functools
from typing import Any

import detectron2
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.engine import DefaultTrainer, TrainerBase
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Instances
from torch import Tensor

__all__ = [
    "PINNED_DETECTRON2",
    "check_detectron2_version",
    "require_pinned_detectron2",
    "inner_trainer",
    "last_eval_results",
    "transform_annotations",
    "forward_mask",
]

PINNED_DETECTRON2 = "0.6"
"""The Detectron2 version whose private members the functions below use."""


def check_detectron2_version(installed: str, *, member: str) -> None:
    """Raise ``RuntimeError`` naming ``member`` and both versions unless ``installed`` is the
    pinned one."""
    if installed != PINNED_DETECTRON2:
        raise RuntimeError(
            f"detectors.host: {member} is a private member of Detectron2 "
            f"{PINNED_DETECTRON2}, but Detectron2 {installed} is installed; install "
            f"detectron2=={PINNED_DETECTRON2} (env/requirements.txt) or port "
            f"detectors/host.py to this version"
        )


@functools.cache
def require_pinned_detectron2(member: str) -> None:
    """:func:`check_detectron2_version` of the installed Detectron2 (checked once per member)."""
    check_detectron2_version(str(getattr(detectron2, "__version__", "unknown")), member=member)


def inner_trainer(trainer: DefaultTrainer) -> TrainerBase:
    """The ``SimpleTrainer`` / ``AMPTrainer`` running ``trainer``'s steps
    (``DefaultTrainer._trainer``): its state holds the optimizer's (and grad scaler's), which
    ``DefaultTrainer.state_dict`` omits."""
    require_pinned_detectron2("DefaultTrainer._trainer")
    return trainer._trainer


def last_eval_results(trainer: DefaultTrainer) -> dict | None:
    """The results of ``trainer``'s last evaluation hook run
    (``DefaultTrainer._last_eval_results``), None if no evaluation ran."""
    require_pinned_detectron2("DefaultTrainer._last_eval_results")
    return getattr(trainer, "_last_eval_results", None)


def transform_annotations(
    mapper: DatasetMapper,
    dataset_dict: dict,
    transforms: T.TransformList,
    image_shape: tuple[int, int],
) -> None:
    """``DatasetMapper._transform_annotations``: ``dataset_dict["annotations"]`` -> ``"instances"``
    transformed like the image (boxes, masks, crowd filtering), in place."""
    require_pinned_detectron2("DatasetMapper._transform_annotations")
    mapper._transform_annotations(dataset_dict, transforms, image_shape)


def forward_mask(
    heads: StandardROIHeads, features: dict[str, Tensor], instances: list[Instances]
) -> Any:
    """``StandardROIHeads._forward_mask``: mask losses in training (a dict, empty without a mask
    head), ``instances`` with ``pred_masks`` at inference."""
    require_pinned_detectron2("StandardROIHeads._forward_mask")
    return heads._forward_mask(features, instances)
