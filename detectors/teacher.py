"""The teacher of a detector config (``MODEL.VILD.TEACHER``): built for the preparation steps (text
classifier, region cache, BARON's text encoder), for online targets and BARON's online teacher, and
for encoding new vocabularies.

Students never import this module (``tests/test_imports.py``). The engine does, and ``import
detectors`` imports the engine, so ``distill.teachers`` / ``distill.toy`` (open_clip) are imported
on first use (:func:`_teachers`, and the toy teacher's branch of :func:`teacher_spec_from_cfg`).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from detectron2.config import CfgNode

from .config import parse_overrides
from .data.toy import toy_world

if TYPE_CHECKING:
    from distill.teachers import TeacherHandle, TeacherSpec

__all__ = [
    "teacher_spec_from_cfg",
    "build_teacher_from_cfg",
    "online_teacher_handle",
]

ORIGIN = "MODEL.VILD.TEACHER"


def _teachers() -> ModuleType:
    """The ``distill.teachers`` package, imported on first use."""
    # lazy: keeps open_clip out of `import detectors` (students)
    import distill.teachers as teachers

    return teachers


def teacher_spec_from_cfg(cfg: CfgNode, *, world: Any = None) -> TeacherSpec:
    """The :class:`distill.teachers.TeacherSpec` of ``MODEL.VILD.TEACHER``: ``"toy"`` (the toy
    world's CLIP, trained first if not cached; ``MODEL_NAME`` its arch, empty for ``distill.toy``'s
    default; ``world`` the toy world if already at hand) or any name registered in
    ``distill.teachers`` (``MODEL_NAME`` required, ``PRETRAINED`` / ``MODEL_CONFIG`` optional)."""
    make_spec = _teachers().TeacherSpec
    teacher_cfg = cfg.MODEL.VILD.TEACHER
    if teacher_cfg.NAME == "toy":
        # lazy: keeps open_clip out of `import detectors` (students)
        from distill.toy import ensure_toy_teacher

        world = world if world is not None else toy_world(cfg)
        options = parse_overrides(teacher_cfg.TOY_OVERRIDES, key=f"{ORIGIN}.TOY_OVERRIDES")
        if teacher_cfg.MODEL_NAME:  # else distill.toy's default architecture
            options["arch"] = teacher_cfg.MODEL_NAME
        files = ensure_toy_teacher(world, **options)
        return make_spec(
            "clip",
            model_name=files.model_name,
            pretrained=str(files.checkpoint),
            model_config=str(files.model_config),
            device=teacher_cfg.DEVICE,
            precision=teacher_cfg.PRECISION,
            origin=ORIGIN,
        )
    if not teacher_cfg.MODEL_NAME:
        raise ValueError(
            f"{ORIGIN}.MODEL_NAME is empty: name the teacher's architecture "
            f"(e.g. ViT-B-32) or use {ORIGIN}.NAME toy"
        )
    return make_spec(
        teacher_cfg.NAME,
        model_name=teacher_cfg.MODEL_NAME,
        pretrained=teacher_cfg.PRETRAINED or None,
        model_config=teacher_cfg.MODEL_CONFIG or None,
        device=teacher_cfg.DEVICE,
        precision=teacher_cfg.PRECISION,
        origin=ORIGIN,
    )


def build_teacher_from_cfg(cfg: CfgNode, *, world: Any = None) -> Any:
    """The teacher of :func:`teacher_spec_from_cfg`, built on ``MODEL.VILD.TEACHER.DEVICE``."""
    return _teachers().build_teacher_from_spec(teacher_spec_from_cfg(cfg, world=world))


def online_teacher_handle(cfg: CfgNode, *, expect_fingerprint: str | None) -> TeacherHandle:
    """A lazy :class:`distill.teachers.TeacherHandle` of :func:`teacher_spec_from_cfg` whose
    teachers must have ``expect_fingerprint`` (the text classifier's; nothing is checked when
    None): the teacher that runs during training (BARON's bag targets, ViLD's ``DISTILL.ONLINE``
    targets)."""
    return _teachers().TeacherHandle(
        teacher_spec_from_cfg(cfg),
        expected_fingerprint=expect_fingerprint,
        expected_from=f"text classifier {cfg.MODEL.VILD.TEXT_EMBEDDINGS}",
    )
