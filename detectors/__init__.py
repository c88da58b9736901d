"""Detectron2 plug-ins of ovdistill: ViLD (text / image / ensemble) and BARON students, open-vocabulary datasets
and evaluators. Importing this package registers them in Detectron2's registries and catalogs.

    from detectors import add_ovdistill_config, OVTrainer
    cfg = get_cfg(); add_ovdistill_config(cfg); cfg.merge_from_file("configs/toy/vild.yaml")

Students never import a teacher (open_clip): text classifiers and region embeddings are files made by
the tool side (``detectors.prepare`` / ``tools/train_net.py``); ``detectors.teacher`` imports the
teacher packages only inside the function that builds one. Module map: ``docs/DESIGN.md``.
"""

from . import data, modeling  # noqa: F401  (registration)
from .config import add_baron_config, add_ovdistill_config, add_vild_config
from .engine import OVTrainer
from .evaluation import OVDetectionEvaluator

__all__ = [
    "add_ovdistill_config",
    "add_vild_config",
    "add_baron_config",
    "OVTrainer",
    "OVDetectionEvaluator",
    "data",
    "modeling",
]
