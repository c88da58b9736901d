"""Teachers: frozen CLIP-style models that embed text, images, regions and pixels in one space.

``build_teacher("clip", model_name=..., pretrained=...)`` / ``ClipTeacher`` (open_clip, ResNet or ViT),
``EnsembleTeacher`` ("ensemble"), prompt templates (``PROMPT_TEMPLATES``), cached text classifiers,
crop / dense region embeddings and MaskCLIP pixel logits.
"""
from distill.teachers.base import TEACHERS, ClassNames, Teacher, TextTooLongError, build_teacher, register_teacher
from distill.teachers.boxes import valid_box_mask
from distill.teachers.clip import ClipTeacher
from distill.teachers.ensemble import EnsembleTeacher
from distill.teachers.maskclip import DenseOutput
from distill.teachers.templates import PROMPT_TEMPLATES
from distill.teachers.text import text_classifier_cache_path

__all__ = ["TEACHERS", "ClassNames", "Teacher", "TextTooLongError", "build_teacher", "register_teacher", "ClipTeacher",
           "EnsembleTeacher", "DenseOutput", "PROMPT_TEMPLATES", "valid_box_mask", "text_classifier_cache_path"]
