"""Teachers: frozen CLIP-style models that embed text, images, regions and pixels in one space.

``build_teacher("clip", model_name=..., pretrained=...)`` / ``ClipTeacher`` (open_clip, ResNet or ViT),
``EnsembleTeacher`` ("ensemble"), prompt templates (``PROMPT_TEMPLATES``), cached text classifiers,
crop / dense region embeddings and MaskCLIP pixel logits. Hosts describe their teacher as a
``TeacherSpec`` (``build_teacher_from_spec``) and give students a lazy ``TeacherHandle``.
"""

from distill.teachers.base import TEACHERS, ClassNames, Teacher, build_teacher, register_teacher
from distill.teachers.boxes import valid_box_mask
from distill.teachers.clip import ClipTeacher
from distill.teachers.ensemble import EnsembleTeacher
from distill.teachers.errors import TextTooLongError
from distill.teachers.handle import TeacherHandle
from distill.teachers.maskclip import DenseOutput
from distill.teachers.spec import TeacherSpec, build_teacher_from_spec
from distill.teachers.templates import PROMPT_TEMPLATES
from distill.teachers.text import read_cached_text_classifier, text_classifier_cache_path

__all__ = [
    "TEACHERS",
    "ClassNames",
    "Teacher",
    "TextTooLongError",
    "build_teacher",
    "register_teacher",
    "ClipTeacher",
    "EnsembleTeacher",
    "DenseOutput",
    "PROMPT_TEMPLATES",
    "valid_box_mask",
    "text_classifier_cache_path",
    "read_cached_text_classifier",
    "TeacherSpec",
    "build_teacher_from_spec",
    "TeacherHandle",
]
