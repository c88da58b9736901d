"""The embedded toy world as Detectron2 datasets: ``toy_train_base`` / ``toy_val`` of
``DATASETS.TOY``."""

from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode

from ..comm import main_process_first
from ..config import parse_overrides
from .datasets import TOY_DATASETS, register_toy_datasets

__all__ = ["toy_world", "setup_toy_datasets"]


def toy_world(cfg: CfgNode) -> Any:
    """The ``distill.toy.ToyWorld`` of ``DATASETS.TOY`` (generated once, then read from its
    cache)."""
    # lazy: distill.toy imports open_clip, which `import detectors` (students) must not
    from distill.toy import ensure_toy_world

    overrides = parse_overrides(cfg.DATASETS.TOY.OVERRIDES, key="DATASETS.TOY.OVERRIDES")
    return ensure_toy_world(
        seed=cfg.DATASETS.TOY.SEED, root=cfg.DATASETS.TOY.ROOT or None, **overrides
    )


def setup_toy_datasets(cfg: CfgNode) -> Any:
    """Generate and register the toy world when the config names a toy dataset; returns it (or
    None)."""
    names = set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST)
    if not names & set(TOY_DATASETS):
        return None
    world = main_process_first(lambda: toy_world(cfg))
    register_toy_datasets(world)
    return world
