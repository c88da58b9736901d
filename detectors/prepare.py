"""Tool-side preparation of everything a ViLD run reads: toy world, text classifier, proposals, region cache.

This module (not the student) talks to teachers: ``distill.teachers`` / ``distill.toy`` are imported
inside the functions that need them. ``prepare_resources(cfg)`` fills the config's empty paths with
cache locations (``distill.utils.cache_dir("vild", ...)``), computing what is missing:

1. datasets named ``toy_train_base`` / ``toy_val``: ``distill.toy.ensure_toy_world`` + registration;
2. ``MODEL.VILD.TEXT_EMBEDDINGS``: ``teacher.text_classifier(synonyms of every train/test class)``;
3. with ``MODEL.VILD.DISTILL.ENABLED`` and ``SOURCE proposals`` and no ``PROPOSALS`` file: train the
   RPN of ``PROPOSAL_CONFIG`` on the (base-only) training set and dump its proposals;
4. ``MODEL.VILD.DISTILL.CACHE``: ``distill.cache.precompute_region_embeddings`` (resumable); with
   ``SOURCE gt`` on a base-only training set, only base-class boxes are embedded.

BARON (``MODEL.META_ARCHITECTURE BaronRCNN``) needs step 1, 2 and ``MODEL.BARON.TEXT_ENCODER``: the
teacher's text tower exported as a pseudo-word encoder (``distill.teachers.text_tower``); its teacher
runs online in training (:func:`build_online_teacher`).

Every step is skipped when its output exists, so a second run (or ``--eval-only``) reuses them.
"""
from __future__ import annotations

import ast
import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils import comm

from distill.utils import cache_dir, sha256_json

from .config import add_ovdistill_config
from .data import TOY_DATASETS, OVDatasetMapper, build_batched_test_loader, get_ov_metadata, register_toy_datasets
from .modeling.text_embeddings import load_text_embeddings, save_text_embeddings

__all__ = [
    "CONFIG_ROOT", "resolve_config_file", "load_config", "parse_overrides", "setup_toy_datasets",
    "build_teacher_from_cfg", "ensure_text_embeddings", "ensure_proposals", "ensure_region_cache",
    "prepare_resources", "build_online_targets", "ensure_text_encoder", "build_online_teacher",
]

logger = logging.getLogger(__name__)

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"
"""The repository's ``configs/`` directory (config names resolve relative to it)."""


def resolve_config_file(name: str | os.PathLike) -> Path:
    """An existing path as given, else ``configs/<name>`` (``.yaml`` appended if missing)."""
    path = Path(name)
    candidates = [path, CONFIG_ROOT / path]
    if path.suffix != ".yaml":
        candidates += [path.with_name(path.name + ".yaml"), CONFIG_ROOT / path.with_name(path.name + ".yaml")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"config {str(name)!r} not found (looked for {[str(c) for c in candidates]})")


def load_config(name: str | os.PathLike, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 defaults + ovdistill keys, merged with a config file (by path or name) and ``opts``."""
    cfg = get_cfg()
    add_ovdistill_config(cfg)
    cfg.merge_from_file(str(resolve_config_file(name)))
    cfg.merge_from_list(list(opts))
    return cfg


def parse_overrides(items: Sequence[str], *, key: str) -> dict[str, Any]:
    """``["n_train=8", "epochs=1"]`` -> ``{"n_train": 8, "epochs": 1}`` (values as Python literals)."""
    out = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{key}: expected 'name=value' entries, got {item!r}")
        try:
            out[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[name.strip()] = value.strip()
    return out


def _main_first(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the main process, then (after a barrier) on the others, which find its outputs cached."""
    result = fn() if comm.is_main_process() else None
    comm.synchronize()
    if not comm.is_main_process():
        result = fn()
    return result


def _toy_world(cfg: CfgNode):
    from distill.toy import ensure_toy_world

    root = cfg.DATASETS.TOY.ROOT or None
    return ensure_toy_world(seed=cfg.DATASETS.TOY.SEED, root=root,
                            **parse_overrides(cfg.DATASETS.TOY.OVERRIDES, key="DATASETS.TOY.OVERRIDES"))


def setup_toy_datasets(cfg: CfgNode):
    """Generate/register the toy world when the config names a toy dataset; returns it (or None)."""
    names = set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST)
    if not names & set(TOY_DATASETS):
        return None
    world = _main_first(lambda: _toy_world(cfg))
    register_toy_datasets(world)
    return world


def build_teacher_from_cfg(cfg: CfgNode, *, world: Any = None):
    """The teacher of ``MODEL.VILD.TEACHER``: ``"toy"`` (the toy world's CLIP; ``MODEL_NAME`` its arch,
    empty for ``distill.toy``'s default) or any registered name."""
    teacher_cfg = cfg.MODEL.VILD.TEACHER
    from distill.teachers import ClipTeacher, build_teacher

    if teacher_cfg.NAME == "toy":
        from distill.toy import ensure_toy_teacher

        world = world if world is not None else _toy_world(cfg)
        options = parse_overrides(teacher_cfg.TOY_OVERRIDES, key="MODEL.VILD.TEACHER.TOY_OVERRIDES")
        if teacher_cfg.MODEL_NAME:  # else distill.toy's default architecture
            options["arch"] = teacher_cfg.MODEL_NAME
        files = ensure_toy_teacher(world, **options)
        return ClipTeacher(files.model_name, pretrained=str(files.checkpoint), model_config=files.model_config,
                           device=teacher_cfg.DEVICE, precision=teacher_cfg.PRECISION)
    if not teacher_cfg.MODEL_NAME:
        raise ValueError("MODEL.VILD.TEACHER.MODEL_NAME is empty: name the teacher's architecture "
                         "(e.g. ViT-B-32) or use MODEL.VILD.TEACHER.NAME toy")
    return build_teacher(teacher_cfg.NAME, model_name=teacher_cfg.MODEL_NAME,
                         pretrained=teacher_cfg.PRETRAINED or None, model_config=teacher_cfg.MODEL_CONFIG or None,
                         device=teacher_cfg.DEVICE, precision=teacher_cfg.PRECISION)


def _class_table(cfg: CfgNode) -> tuple[list[str], list[list[str]]]:
    """Names and synonym lists of every class of DATASETS.TRAIN and DATASETS.TEST (deduplicated)."""
    from distill.vocab import normalize_name

    names, synonyms, seen = [], [], set()
    for dataset in [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]:
        meta = get_ov_metadata(dataset)
        for name, syns in zip(meta.thing_classes, meta.thing_synonyms):
            if normalize_name(name) not in seen:
                seen.add(normalize_name(name))
                names.append(name)
                synonyms.append(list(syns))
    return names, synonyms


def ensure_text_embeddings(cfg: CfgNode, teacher: Callable[[], Any]) -> str:
    """Make ``MODEL.VILD.TEXT_EMBEDDINGS`` exist and cover every class; returns (and sets) its path.

    An existing file is used as is when it covers all classes; a missing one is computed with
    ``teacher()`` (prompt ensemble ``MODEL.VILD.TEACHER.TEMPLATES``). An empty key selects a cache path
    keyed by teacher fingerprint, templates and classes.
    """
    names, synonyms = _class_table(cfg)
    path = cfg.MODEL.VILD.TEXT_EMBEDDINGS
    if path and Path(path).is_file():
        load_text_embeddings(path).select(names)  # KeyError naming missing classes
        return path

    def compute() -> str:
        model = teacher()
        target = path or str(cache_dir("vild", "text_embeddings", f"{str(model.fingerprint)[:16]}-"
                                       f"{sha256_json([cfg.MODEL.VILD.TEACHER.TEMPLATES, names, synonyms])[:12]}.pt"))
        if not Path(target).is_file():
            embeddings = model.text_classifier(synonyms, templates=cfg.MODEL.VILD.TEACHER.TEMPLATES)
            save_text_embeddings(target, names, embeddings, teacher_fingerprint=model.fingerprint)
            logger.info("text classifier of %d classes -> %s", len(names), target)
        return target

    resolved = _main_first(compute)
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = resolved
    return resolved


def _file_key(path: str | os.PathLike) -> dict:
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def ensure_proposals(cfg: CfgNode) -> str:
    """The proposal file for the region cache: ``MODEL.VILD.DISTILL.PROPOSALS``, or proposals dumped by
    the RPN of ``PROPOSAL_CONFIG`` trained on ``DATASETS.TRAIN`` (cached by config; resumable)."""
    distill = cfg.MODEL.VILD.DISTILL
    if distill.PROPOSALS:
        if not Path(distill.PROPOSALS).is_file():
            raise FileNotFoundError(f"MODEL.VILD.DISTILL.PROPOSALS file {distill.PROPOSALS} does not exist")
        return distill.PROPOSALS
    if not distill.PROPOSAL_CONFIG:
        raise ValueError("MODEL.VILD.DISTILL.SOURCE is 'proposals' but neither PROPOSALS (a proposal file) nor "
                         "PROPOSAL_CONFIG (an RPN config to train) is set; or use SOURCE gt")
    rpn_cfg = load_config(distill.PROPOSAL_CONFIG)
    for key in ("DATASETS", "SEED", "INPUT"):
        rpn_cfg[key] = cfg[key].clone() if isinstance(cfg[key], CfgNode) else cfg[key]
    rpn_cfg.DATASETS.TEST = ()
    rpn_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    rpn_cfg.merge_from_list(list(distill.PROPOSAL_OPTS))
    train_name = cfg.DATASETS.TRAIN[0]
    trained = rpn_cfg.clone()  # the cache key covers what changes the weights, not inference settings
    trained.TEST, trained.OUTPUT_DIR = CfgNode(), ""
    key = sha256_json([trained.dump(), _file_key(get_ov_metadata(train_name).json_file)])[:16]
    rpn_cfg.OUTPUT_DIR = str(cache_dir("vild", "rpn", f"{train_name}-{key}"))
    out = Path(rpn_cfg.OUTPUT_DIR) / f"proposals_{train_name}.pkl"
    if out.is_file():
        cfg.MODEL.VILD.DISTILL.PROPOSALS = str(out)
        return str(out)
    if comm.get_world_size() > 1:
        raise ValueError("training the proposal network inside a multi-process run is not supported: run once "
                         "with --num-gpus 1 (it is cached), or set MODEL.VILD.DISTILL.PROPOSALS")
    from .engine import OVTrainer, seed_everything

    final = Path(rpn_cfg.OUTPUT_DIR) / "model_final.pth"
    if not final.is_file():
        logger.info("training the proposal network %s on %s -> %s", distill.PROPOSAL_CONFIG, train_name,
                    rpn_cfg.OUTPUT_DIR)
        Path(rpn_cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        seed_everything(max(rpn_cfg.SEED, 0))
        trainer = OVTrainer(rpn_cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()
    model = build_model(rpn_cfg)
    DetectionCheckpointer(model).load(str(final))
    from .proposals import dump_proposals

    loader = build_batched_test_loader(DatasetCatalog.get(train_name), mapper=OVDatasetMapper(rpn_cfg, False),
                                       batch_size=rpn_cfg.TEST.IMS_PER_BATCH)
    dump_proposals(model, loader, out)
    cfg.MODEL.VILD.DISTILL.PROPOSALS = str(out)
    return str(out)


def _regions_json(cfg: CfgNode) -> str:
    """The json whose images (and, for SOURCE gt, boxes) get teacher embeddings: the training set's, made
    base-only first when the training set is (ground-truth regions must never include novel objects)."""
    train_name = cfg.DATASETS.TRAIN[0]
    meta = get_ov_metadata(train_name)
    if cfg.MODEL.VILD.DISTILL.SOURCE != "gt" or not meta.get("base_only", False):
        return meta.json_file
    from distill.vocab import make_base_only_json

    key = sha256_json([_file_key(meta.json_file), sorted(meta.base_class_ids)])[:12]
    path = cache_dir("vild", "base_only", f"{train_name}-{key}.json")
    if not path.is_file():
        make_base_only_json(meta.json_file, path, keep_category_ids=meta.base_class_ids)
    return str(path)


def ensure_region_cache(cfg: CfgNode, teacher: Callable[[], Any]) -> str:
    """Make ``MODEL.VILD.DISTILL.CACHE`` a complete embedding store of the training set; returns its path.

    An existing complete store is used as is (its teacher is checked when training starts); a missing
    or incomplete one is (re)computed by ``distill.cache.precompute_region_embeddings``, which resumes
    finished shards and refuses to mix a different teacher's embeddings into an existing store.
    """
    from distill.cache import EmbeddingStore, precompute_region_embeddings

    distill = cfg.MODEL.VILD.DISTILL
    train_name = cfg.DATASETS.TRAIN[0]
    meta = get_ov_metadata(train_name)
    if distill.CACHE:
        try:
            EmbeddingStore.open(distill.CACHE)
            return distill.CACHE
        except (FileNotFoundError, ValueError) as err:
            logger.info("region cache %s not usable yet (%s): computing it", distill.CACHE, err)
    proposals = ensure_proposals(cfg) if distill.SOURCE == "proposals" else None
    fingerprint = load_text_embeddings(cfg.MODEL.VILD.TEXT_EMBEDDINGS).teacher_fingerprint
    settings = [_file_key(meta.json_file), proposals and _file_key(proposals), distill.SOURCE, distill.MAX_PER_IMAGE,
                distill.MODE, list(distill.SCALES), fingerprint]
    path = distill.CACHE or str(cache_dir("vild", "regions", f"{train_name}-{fingerprint[:12]}-"
                                          f"{sha256_json(settings)[:12]}"))

    def compute() -> str:
        try:
            EmbeddingStore.open(path)
            return path
        except (FileNotFoundError, ValueError):
            pass
        precompute_region_embeddings(teacher(), _regions_json(cfg), meta.image_root, path, proposals=proposals,
                                     source=distill.SOURCE, max_per_image=distill.MAX_PER_IMAGE, mode=distill.MODE,
                                     scales=tuple(distill.SCALES), rank=0, world_size=1)
        return path

    cfg.MODEL.VILD.DISTILL.CACHE = _main_first(compute)
    return cfg.MODEL.VILD.DISTILL.CACHE


def ensure_text_encoder(cfg: CfgNode, teacher: Callable[[], Any]) -> str:
    """Make ``MODEL.BARON.TEXT_ENCODER`` exist (the teacher's text tower for pseudo words); returns its path.

    An existing file is used as is (its teacher is checked when the model is built); an empty key
    selects a cache path keyed by the teacher fingerprint.
    """
    path = cfg.MODEL.BARON.TEXT_ENCODER
    if path and Path(path).is_file():
        return path

    def compute() -> str:
        from distill.teachers.text_tower import export_text_encoder
        from distill.text_encoder import save_text_encoder

        model = teacher()
        target = path or str(cache_dir("baron", "text_encoders", f"{str(model.fingerprint)[:24]}.pt"))
        if not Path(target).is_file():
            save_text_encoder(target, export_text_encoder(model), teacher_fingerprint=model.fingerprint)
            logger.info("pseudo-word text encoder of %s -> %s", cfg.MODEL.VILD.TEACHER.NAME, target)
        return target

    cfg.MODEL.BARON.TEXT_ENCODER = _main_first(compute)
    return cfg.MODEL.BARON.TEXT_ENCODER


def build_online_teacher(cfg: CfgNode, *, expect_fingerprint: str):
    """BARON's online teacher (``MODEL.VILD.TEACHER``), checked against the text classifier's fingerprint."""
    teacher = build_teacher_from_cfg(cfg)
    if str(teacher.fingerprint) != str(expect_fingerprint):
        raise ValueError(f"the configured teacher's fingerprint {teacher.fingerprint!r} differs from the text "
                         f"classifier's {expect_fingerprint!r} ({cfg.MODEL.VILD.TEXT_EMBEDDINGS})")
    return teacher


def prepare_resources(cfg: CfgNode) -> CfgNode:
    """Run the preparation steps of the module docstring on ``cfg`` (mutated: paths filled in)."""
    world = setup_toy_datasets(cfg)
    if cfg.MODEL.META_ARCHITECTURE not in ("ViLDRCNN", "BaronRCNN"):
        return cfg
    teacher = functools.lru_cache(maxsize=1)(lambda: build_teacher_from_cfg(cfg, world=world))
    ensure_text_embeddings(cfg, teacher)
    if cfg.MODEL.META_ARCHITECTURE == "BaronRCNN":
        ensure_text_encoder(cfg, teacher)
        return cfg
    if cfg.MODEL.VILD.DISTILL.ENABLED and not cfg.MODEL.VILD.DISTILL.ONLINE:
        ensure_region_cache(cfg, teacher)
    return cfg


def build_online_targets(cfg: CfgNode, *, expect_fingerprint: str | None = None):
    """``OnlineRegionTargets`` over the training set with the configured teacher (MODEL.VILD.DISTILL.ONLINE)."""
    from distill.hooks import OnlineRegionTargets

    distill = cfg.MODEL.VILD.DISTILL
    meta = get_ov_metadata(cfg.DATASETS.TRAIN[0])
    teacher = build_teacher_from_cfg(cfg)
    if expect_fingerprint is not None and str(teacher.fingerprint) != str(expect_fingerprint):
        raise ValueError(f"the configured teacher's fingerprint {teacher.fingerprint!r} differs from the text "
                         f"classifier's {expect_fingerprint!r} ({cfg.MODEL.VILD.TEXT_EMBEDDINGS})")
    proposals = ensure_proposals(cfg) if distill.SOURCE == "proposals" else None
    return OnlineRegionTargets.from_coco_json(teacher, _regions_json(cfg), meta.image_root, proposals=proposals,
                                              max_per_image=distill.MAX_PER_IMAGE, mode=distill.MODE,
                                              scales=tuple(distill.SCALES), on_missing=distill.ON_MISSING)
