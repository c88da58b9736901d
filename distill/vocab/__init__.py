"""Vocabularies and open-vocabulary splits: OV-COCO ids, LVIS frequency groups, ``Vocabulary``,
base-only annotation writer, COCO-json validation."""
from .coco_json import load_coco_json
from .ovcoco import OV_COCO_BASE_IDS, OV_COCO_NOVEL_IDS, OV_COCO_NOVEL_NAMES
from .splits import make_base_only_json
from .vocabulary import NOVEL_ROLES, ROLES, Vocabulary, lvis_frequency_groups, normalize_name

__all__ = [
    "OV_COCO_BASE_IDS", "OV_COCO_NOVEL_IDS", "OV_COCO_NOVEL_NAMES", "NOVEL_ROLES", "ROLES", "Vocabulary",
    "load_coco_json", "lvis_frequency_groups", "make_base_only_json", "normalize_name",
]
