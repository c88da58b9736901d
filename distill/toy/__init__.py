"""The embedded toy open-vocabulary world: procedural dataset + tiny open_clip teacher + build-once cache.

>>> world = ensure_toy_world(seed=0)                 # COCO/LVIS-style json, seg PNGs, labels, captions
>>> files = ensure_toy_teacher(world, arch="vit")    # open_clip config JSON + state-dict checkpoint
"""

from .cache import (
    COMPLETE,
    ToyTeacherFiles,
    ensure_toy_teacher,
    ensure_toy_world,
    toy_world_dir,
    verify_complete,
)
from .shapes import BASE_NAMES, CATEGORIES, COLORS, NOVEL_NAMES, Category
from .teacher import TEACHER_VERSION, ToyTeacherConfig, load_toy_clip, train_toy_teacher
from .world import GENERATOR_VERSION, ToyWorld, ToyWorldConfig, generate_toy_world

__all__ = [
    "BASE_NAMES",
    "CATEGORIES",
    "COLORS",
    "COMPLETE",
    "Category",
    "GENERATOR_VERSION",
    "NOVEL_NAMES",
    "TEACHER_VERSION",
    "ToyTeacherConfig",
    "ToyTeacherFiles",
    "ToyWorld",
    "ToyWorldConfig",
    "ensure_toy_teacher",
    "ensure_toy_world",
    "generate_toy_world",
    "load_toy_clip",
    "toy_world_dir",
    "train_toy_teacher",
    "verify_complete",
]
