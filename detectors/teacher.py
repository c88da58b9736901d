"""The teacher of a detector config (``MODEL.VILD.TEACHER``): built for the preparation steps (text
classifier, region cache, BARON's text encoder), for online targets and BARON's online teacher, and
for encoding new vocabularies.

Students never import this module (``tests/test_imports.py``). The engine does, and ``import
detectors`` imports the engine, so ``distill.teachers`` / ``distill.toy`` (open_clip) are imported
inside the function that builds a teacher.
"""
from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode

from .config import parse_overrides
from .data.toy import toy_world

__all__ = ["build_teacher_from_cfg", "check_teacher", "build_online_teacher"]


def build_teacher_from_cfg(cfg: CfgNode, *, world: Any = None) -> Any:
    """The teacher of ``MODEL.VILD.TEACHER``: ``"toy"`` (the toy world's CLIP; ``MODEL_NAME`` its
    arch, empty for ``distill.toy``'s default; ``world`` the toy world if already at hand) or any
    name registered in ``distill.teachers``."""
    # lazy: keeps open_clip out of `import detectors` (students)
    from distill.teachers import ClipTeacher, build_teacher

    teacher_cfg = cfg.MODEL.VILD.TEACHER
    if teacher_cfg.NAME == "toy":
        # lazy: keeps open_clip out of `import detectors` (students)
        from distill.toy import ensure_toy_teacher

        world = world if world is not None else toy_world(cfg)
        options = parse_overrides(teacher_cfg.TOY_OVERRIDES, key="MODEL.VILD.TEACHER.TOY_OVERRIDES")
        if teacher_cfg.MODEL_NAME:  # else distill.toy's default architecture
            options["arch"] = teacher_cfg.MODEL_NAME
        files = ensure_toy_teacher(world, **options)
        return ClipTeacher(files.model_name, pretrained=str(files.checkpoint),
                           model_config=files.model_config, device=teacher_cfg.DEVICE,
                           precision=teacher_cfg.PRECISION)
    if not teacher_cfg.MODEL_NAME:
        raise ValueError("MODEL.VILD.TEACHER.MODEL_NAME is empty: name the teacher's architecture "
                         "(e.g. ViT-B-32) or use MODEL.VILD.TEACHER.NAME toy")
    return build_teacher(teacher_cfg.NAME, model_name=teacher_cfg.MODEL_NAME,
                         pretrained=teacher_cfg.PRETRAINED or None,
                         model_config=teacher_cfg.MODEL_CONFIG or None, device=teacher_cfg.DEVICE,
                         precision=teacher_cfg.PRECISION)


def check_teacher(cfg: CfgNode, teacher: Any, *, expect_fingerprint: str | None) -> Any:
    """``teacher``, after checking that it made the text classifier (``expect_fingerprint``, the
    classifier file's; nothing to check when None): ``ValueError`` naming both otherwise."""
    if expect_fingerprint is not None and str(teacher.fingerprint) != str(expect_fingerprint):
        raise ValueError(f"the configured teacher's fingerprint {teacher.fingerprint!r} differs "
                         f"from the text classifier's {expect_fingerprint!r} "
                         f"({cfg.MODEL.VILD.TEXT_EMBEDDINGS})")
    return teacher


def build_online_teacher(cfg: CfgNode, *, expect_fingerprint: str | None) -> Any:
    """The teacher that runs during training (BARON's bag targets, ViLD's ``DISTILL.ONLINE``
    targets), checked against the text classifier's fingerprint."""
    return check_teacher(cfg, build_teacher_from_cfg(cfg), expect_fingerprint=expect_fingerprint)
