"""Vocabularies and open-vocabulary splits: OV-COCO ids, LVIS frequency groups, ``Vocabulary``,
base-only annotation writer, COCO-json validation; the students' text classifier
(``ClassifierFile``, ``cosine_logits``), class-name validation and the teacher-fingerprint check."""

from .classifier import CLASSIFIER_FORMAT, CLASSIFIER_VERSION, ClassifierFile
from .coco_json import load_coco_json
from .fingerprint import check_teacher_fingerprint
from .logits import cosine_logits, dense_cosine_logits
from .names import canonical_class_entries, names_and_synonyms, normalize_name, validate_class_names
from .ovcoco import OV_COCO_BASE_IDS, OV_COCO_NOVEL_IDS, OV_COCO_NOVEL_NAMES
from .splits import make_base_only_json
from .vocabulary import NOVEL_ROLES, ROLES, Vocabulary, lvis_frequency_groups

__all__ = [
    "OV_COCO_BASE_IDS",
    "OV_COCO_NOVEL_IDS",
    "OV_COCO_NOVEL_NAMES",
    "NOVEL_ROLES",
    "ROLES",
    "Vocabulary",
    "load_coco_json",
    "lvis_frequency_groups",
    "make_base_only_json",
    "normalize_name",
    "validate_class_names",
    "canonical_class_entries",
    "names_and_synonyms",
    "check_teacher_fingerprint",
    "ClassifierFile",
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_VERSION",
    "cosine_logits",
    "dense_cosine_logits",
]
