"""ovdistill's Detectron2 configs: the yacs keys of its plug-ins (``add_ovdistill_config``) and
loading a config file by path or by name relative to ``configs/`` (``load_config``)."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

__all__ = [
    "add_vild_config",
    "add_baron_config",
    "add_ovdistill_config",
    "classifier_text_space",
    "CONFIG_ROOT",
    "resolve_config_file",
    "load_config",
    "parse_overrides",
]

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"
"""The repository's ``configs/`` directory (config names resolve relative to it)."""


def resolve_config_file(name: str | os.PathLike) -> Path:
    """An existing path as given, else ``configs/<name>`` (``.yaml`` appended if missing)."""
    path = Path(name)
    candidates = [path, CONFIG_ROOT / path]
    if path.suffix != ".yaml":
        with_suffix = path.with_name(path.name + ".yaml")
        candidates += [with_suffix, CONFIG_ROOT / with_suffix]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = [str(c) for c in candidates]
    raise FileNotFoundError(f"config {str(name)!r} not found (looked for {looked})")


def load_config(name: str | os.PathLike, opts: Sequence[str] = ()) -> CN:
    """Detectron2 defaults + ovdistill keys, merged with a config file (by path or name) and
    ``opts``."""
    cfg = get_cfg()
    add_ovdistill_config(cfg)
    cfg.merge_from_file(str(resolve_config_file(name)))
    cfg.merge_from_list(list(opts))
    return cfg


def parse_overrides(items: Sequence[str], *, key: str) -> dict[str, Any]:
    """``["n_train=8", "epochs=1"]`` -> ``{"n_train": 8, "epochs": 1}`` (values as Python
    literals)."""
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


def add_vild_config(cfg: CN) -> CN:
    """Add ViLD's keys (``MODEL.VILD.*``) to ``cfg`` in place and return it.

    Keys:
        MODEL.VILD.TEXT_EMBEDDINGS: ``.pt`` file ``{names, embeddings [N, D], teacher_fingerprint}``
            holding (at least) the class names of every train/test dataset. Empty: ``tools/train_net.py``
            computes it with ``MODEL.VILD.TEACHER`` into the cache directory and fills the key in.
        MODEL.VILD.CLASSES.NAMES / SEEN: the training vocabulary the model is built with: the
            class names of DATASETS.TRAIN (contiguous order) and, per name, whether it is trained
            on (a base class; False for novel / LVIS-rare ones). Empty: resolved from the dataset
            catalog by ``detectors.data.resolve_training_classes`` (``tools/train_net.py`` and
            ``OVPredictor`` call it), so the model itself reads only this config and the
            classifier file.
        MODEL.VILD.CLASSES.TEST_EXTRA_NAMES: class names appended to every test dataset's classes
            at evaluation (``OVTrainer.test``): the softmax, score threshold, NMS and top-k run over
            dataset + extra classes, then ``OVDetectionEvaluator`` drops the extra classes'
            detections. BARON's OV-COCO test scores all 80 COCO classes while the metrics cover the
            65 of OV-COCO (wusize/ovdet@d74a20c ``coco_clip_hand_craft_attn12.npy``, 80 rows).
            The names must be in the classifier file (the preparation step encodes them).
            Default ``[]``.
        MODEL.VILD.TEMPERATURE: logits = cosine / TEMPERATURE (ViLD: 0.01).
        MODEL.VILD.ENSEMBLE: ViLD-ensemble: a second, distillation-only branch (own box head and
            projection); base classes score ``p_text^w * p_img^(1-w)``, novel ``p_text^(1-w) * p_img^w``.
        MODEL.VILD.ENSEMBLE_WEIGHT: ``w`` above (ViLD: 2/3).
        MODEL.VILD.UNSEEN_TRAIN_LOGITS: training logits of classes outside the training vocabulary:
            ``"remove"`` (-inf, out of the softmax; default) or ``"zero"`` (multiplied by 0, kept in
            the softmax: ViLD's LVIS code, ``vild_losses.py``).
        MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER: the ViLD / BARON box loss is summed over
            foreground RoIs and divided by the sampled RoIs (``"sampled"``, Detectron2 / mmdet;
            default) or by 4 x the foreground RoIs (``"foreground_x4"``, ViLD's ``losses.py``).
        MODEL.VILD.TEACHER.*: the teacher used by the tool for the text classifier and the region cache
            (``NAME`` ``"clip"`` = ``distill.teachers.ClipTeacher``; ``"toy"`` = the toy world's teacher,
            ``MODEL_NAME`` its arch "vit"/"resnet" or empty for the default, ``TOY_OVERRIDES``
            ``["epochs=1", ...]`` its recipe).
        MODEL.VILD.DISTILL.ENABLED: ViLD-image: L1 between student and teacher region embeddings.
        MODEL.VILD.DISTILL.WEIGHT: weight of that loss (ViLD: 0.5 for R50).
        MODEL.VILD.DISTILL.CACHE: ``distill.cache.EmbeddingStore`` directory; empty: the tool picks a
            directory in the cache and runs the precompute there if it is missing.
        MODEL.VILD.DISTILL.SOURCE: regions the precompute embeds: ``"proposals"`` (ViLD) or ``"gt"``.
        MODEL.VILD.DISTILL.PROPOSALS: Detectron2-format proposal file for the precompute; empty with
            SOURCE ``proposals``: the tool trains ``PROPOSAL_CONFIG`` (an RPN on the base classes) and
            dumps its proposals.
        MODEL.VILD.DISTILL.PROPOSAL_CONFIG: config of that RPN (resolved like ``--config``); it is trained
            on this config's DATASETS.TRAIN / INPUT / SEED / MODEL.DEVICE, with PROPOSAL_OPTS
            (``["SOLVER.MAX_ITER", "100", ...]``) applied last.
        MODEL.VILD.DISTILL.MAX_PER_IMAGE: regions per image stored by the precompute (ViLD: 300).
        MODEL.VILD.DISTILL.ROIS_PER_IMAGE: distillation regions per image and iteration (a random subset
            of the stored ones when there are more; ViLD: 300, all of them).
        MODEL.VILD.DISTILL.MODE / SCALES: teacher region-embedding mode and crop scales (ViLD: crop, 1.0/1.5).
        MODEL.VILD.DISTILL.ON_MISSING: images without cached regions: ``"error"`` (default) or
            ``"skip"`` (logged once with the count; those images get no distillation loss).
        MODEL.VILD.DISTILL.ONLINE: compute teacher targets on the fly (``OnlineRegionTargets``) instead of
            reading a cache (slow; for small experiments).
    """
    cfg.MODEL.VILD = CN()
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = ""
    cfg.MODEL.VILD.TEMPERATURE = 0.01
    cfg.MODEL.VILD.ENSEMBLE = False
    cfg.MODEL.VILD.ENSEMBLE_WEIGHT = 2.0 / 3.0
    cfg.MODEL.VILD.UNSEEN_TRAIN_LOGITS = "remove"
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER = "sampled"

    cfg.MODEL.VILD.CLASSES = CN()
    cfg.MODEL.VILD.CLASSES.NAMES = []
    cfg.MODEL.VILD.CLASSES.SEEN = []
    cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES = []

    cfg.MODEL.VILD.TEACHER = CN()
    cfg.MODEL.VILD.TEACHER.NAME = "clip"
    cfg.MODEL.VILD.TEACHER.MODEL_NAME = ""
    cfg.MODEL.VILD.TEACHER.PRETRAINED = ""
    cfg.MODEL.VILD.TEACHER.MODEL_CONFIG = ""
    cfg.MODEL.VILD.TEACHER.DEVICE = "cpu"
    cfg.MODEL.VILD.TEACHER.PRECISION = "fp32"
    cfg.MODEL.VILD.TEACHER.TEMPLATES = "vild"
    cfg.MODEL.VILD.TEACHER.TOY_OVERRIDES = []

    cfg.MODEL.VILD.DISTILL = CN()
    cfg.MODEL.VILD.DISTILL.ENABLED = False
    cfg.MODEL.VILD.DISTILL.WEIGHT = 0.5
    cfg.MODEL.VILD.DISTILL.CACHE = ""
    cfg.MODEL.VILD.DISTILL.SOURCE = "proposals"
    cfg.MODEL.VILD.DISTILL.PROPOSALS = ""
    cfg.MODEL.VILD.DISTILL.PROPOSAL_CONFIG = ""
    cfg.MODEL.VILD.DISTILL.PROPOSAL_OPTS = []
    cfg.MODEL.VILD.DISTILL.MAX_PER_IMAGE = 300
    cfg.MODEL.VILD.DISTILL.ROIS_PER_IMAGE = 300
    cfg.MODEL.VILD.DISTILL.MODE = "crop"
    cfg.MODEL.VILD.DISTILL.SCALES = (1.0, 1.5)
    cfg.MODEL.VILD.DISTILL.ON_MISSING = "error"
    cfg.MODEL.VILD.DISTILL.ONLINE = False
    return cfg


def add_baron_config(cfg: CN) -> CN:
    """Add BARON's keys (``MODEL.BARON.*``) to ``cfg`` in place and return it.

    BARON reuses ``MODEL.VILD.TEXT_EMBEDDINGS`` / ``TEMPERATURE`` (training logit scale 1 / TEMPERATURE:
    BARON COCO 50 -> 0.02, LVIS 100 -> 0.01), ``ENSEMBLE`` / ``ENSEMBLE_WEIGHT`` and ``TEACHER`` (the
    teacher also runs online during training, on ``TEACHER.DEVICE``).

    Keys:
        MODEL.BARON.TEXT_ENCODER: ``.pt`` file of the teacher's frozen text tower reading word embeddings
            (``distill.text_encoder``); empty: ``tools/train_net.py`` exports it from MODEL.VILD.TEACHER.
        MODEL.BARON.TEXT_SPACE: space of the classifier (class embeddings and region embeddings):
            ``"projected"`` (CLIP's joint space; default, ovdet's OV-LVIS) or ``"attn12"`` (the eot
            token after the last text block, no final layer norm, no projection: ovdet's OV-COCO
            ``use_attn12_output=True``). The bag / single-region losses stay in the projected space
            (as in ovdet). The classifier file records its space; a mismatch is an error.
        MODEL.BARON.NUM_WORDS: pseudo words per region (BARON: 6 for FPN, 4 for C4).
        MODEL.BARON.WORD_DROPOUT: probability to drop each pseudo word in training (0.5); a region keeps
            at least one word.
        MODEL.BARON.POS_EMBED_FEATS: sine features per box coordinate of the in-bag positional embedding (128).
        MODEL.BARON.BG_WEIGHT: weight of background RoIs in the classification CE (0.7 FPN, 1.0 C4).
        MODEL.BARON.TEST_TEMPERATURE: temperature at inference; 0 = MODEL.VILD.TEMPERATURE (LVIS: 0.007).
        MODEL.BARON.ENSEMBLE_BACKGROUND: BARON-ensemble scoring (with MODEL.VILD.ENSEMBLE): the
            distillation branch's softmax includes the background and the background column is
            weighted like a seen class (ovdet's ensemble_bbox_head.py). False: ViLD's rule.
        MODEL.BARON.QUEUE_SIZE: embeddings kept per queue (student / teacher, bag / single region): 1024.
        MODEL.BARON.BAG.WEIGHT / TEMPERATURE: bag InfoNCE weight (1.0) and logit scale (30 COCO, 20 LVIS).
        MODEL.BARON.SINGLE.WEIGHT / TEMPERATURE: single-region InfoNCE weight (0.1) and scale (50 / 30);
            WEIGHT 0 disables it.
        MODEL.BARON.SINGLE.TOKENS: tokens of the single-region loss: ``"bag_crop"`` (default, ovdet's
            ``baron_kd.py``): per region the mean of its words' eot-residual value-path tokens from the
            last text block vs the teacher's tokens of the BAG CROP (``ClipTeacher.crop_tokens``)
            RoI-aligned 1x1 (sampling 2, aligned) on the region's box inside the crop;
            ``"dense_image"`` (old): the mean of the words' normalized causal output tokens vs the
            teacher's MaskCLIP dense tokens of the whole image RoI-aligned ``POOLER_RESOLUTION``.
        MODEL.BARON.SINGLE.POOLER_RESOLUTION: bins of the RoI-align pooling of the teacher's dense tokens
            (``TOKENS "dense_image"`` only).
        MODEL.BARON.SAMPLING.*: neighbourhood sampling (``detectors.modeling.baron_sampler``): TOPK
            proposals (300 COCO, 500 LVIS), USE_GT, OBJECTNESS_THRESH (0.85), ASPECT_THRESH (0.25: w/h in
            (0.25, 4)), AREA_RATIO_THRESH (share of the image area a centre must exceed: 0.01;
            0 = no filter), NMS_THRESH (0.1), ALPHA (3), BASE_PROBABILITY (0.3), CUTOFF_THRESH (0.3),
            INTERVAL (-0.1), MAX_GROUPS per box (3 COCO, 6 LVIS), MAX_PERMUTATIONS per group (2).
        MODEL.BARON.BOXES_CACHE.ENABLED: keep each training image's bag-centre boxes (in its
            original frame) and merge them into later visits (``detectors.modeling.boxes_cache``;
            ovdet's BoxesCache: only its OV-COCO 90kx2 config enables it). Top-k, score threshold
            and NMS are SAMPLING.TOPK / OBJECTNESS_THRESH / NMS_THRESH. Not saved in checkpoints
            (as ovdet).
        MODEL.BARON.BOXES_CACHE.START_ITER: the cache is used from this call on, counted per image
            and per process as ovdet (20000; with ovdet's 16 processes x 2 images: iteration 10000).
    """
    cfg.MODEL.BARON = CN()
    cfg.MODEL.BARON.TEXT_ENCODER = ""
    cfg.MODEL.BARON.TEXT_SPACE = "projected"
    cfg.MODEL.BARON.NUM_WORDS = 6
    cfg.MODEL.BARON.WORD_DROPOUT = 0.5
    cfg.MODEL.BARON.POS_EMBED_FEATS = 128
    cfg.MODEL.BARON.BG_WEIGHT = 0.7
    cfg.MODEL.BARON.TEST_TEMPERATURE = 0.0
    cfg.MODEL.BARON.ENSEMBLE_BACKGROUND = True
    cfg.MODEL.BARON.QUEUE_SIZE = 1024
    cfg.MODEL.BARON.BAG = CN()
    cfg.MODEL.BARON.BAG.WEIGHT = 1.0
    cfg.MODEL.BARON.BAG.TEMPERATURE = 30.0
    cfg.MODEL.BARON.SINGLE = CN()
    cfg.MODEL.BARON.SINGLE.WEIGHT = 0.1
    cfg.MODEL.BARON.SINGLE.TEMPERATURE = 50.0
    cfg.MODEL.BARON.SINGLE.TOKENS = "bag_crop"
    cfg.MODEL.BARON.SINGLE.POOLER_RESOLUTION = 7
    cfg.MODEL.BARON.SAMPLING = CN()
    cfg.MODEL.BARON.SAMPLING.TOPK = 300
    cfg.MODEL.BARON.SAMPLING.USE_GT = True
    cfg.MODEL.BARON.SAMPLING.OBJECTNESS_THRESH = 0.85
    cfg.MODEL.BARON.SAMPLING.ASPECT_THRESH = 0.25
    cfg.MODEL.BARON.SAMPLING.AREA_RATIO_THRESH = 0.01
    cfg.MODEL.BARON.SAMPLING.NMS_THRESH = 0.1
    cfg.MODEL.BARON.SAMPLING.ALPHA = 3.0
    cfg.MODEL.BARON.SAMPLING.BASE_PROBABILITY = 0.3
    cfg.MODEL.BARON.SAMPLING.CUTOFF_THRESH = 0.3
    cfg.MODEL.BARON.SAMPLING.INTERVAL = -0.1
    cfg.MODEL.BARON.SAMPLING.MAX_GROUPS = 3
    cfg.MODEL.BARON.SAMPLING.MAX_PERMUTATIONS = 2
    cfg.MODEL.BARON.BOXES_CACHE = CN()
    cfg.MODEL.BARON.BOXES_CACHE.ENABLED = False
    cfg.MODEL.BARON.BOXES_CACHE.START_ITER = 20000
    return cfg


def classifier_text_space(cfg: CN) -> str:
    """The text space the model's classifier lives in: MODEL.BARON.TEXT_SPACE for BARON models
    (MODEL.META_ARCHITECTURE ``BaronRCNN``), ``"projected"`` for every other model."""
    if cfg.MODEL.META_ARCHITECTURE == "BaronRCNN":
        return str(cfg.MODEL.BARON.TEXT_SPACE)
    return "projected"


def add_ovdistill_config(cfg: CN) -> CN:
    """All ovdistill keys: ``add_vild_config``, ``add_baron_config`` plus data, backbone and determinism keys.

    Extra keys:
        MODEL.BASIC_RESNET.DEPTH / WIDTH: ``build_basic_resnet_fpn_backbone`` (basic-block ResNet of any
            width, e.g. a half-width R18 for CPU experiments; BN from scratch).
        DATASETS.TOY.SEED / ROOT / OVERRIDES: the toy world used for the datasets ``toy_train_base`` /
            ``toy_val`` (``distill.toy.ensure_toy_world``; ROOT empty = the cache directory; OVERRIDES
            ``["n_train=8", ...]`` change its size).
        INPUT.LSJ.*: large-scale jitter for training (ViLD's recipe): resize to SIZE x [MIN_SCALE, MAX_SCALE],
            crop/pad to SIZE x SIZE, random horizontal flip; replaces ResizeShortestEdge + flip.
        MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD: the ViLD / BARON box pooler computes the RoIAlign
            gradient of small CPU feature maps by matrix products (``detectors.modeling.poolers``; same
            forward, same gradient up to float summation order, several times faster than torchvision's
            single-threaded CPU kernel). No effect on GPU, at inference or on maps over 64 x 64 cells.
        MODEL.ROI_BOX_HEAD.FC_NORM: norm of ``ViLDConvFCHead``'s fully connected layers: ``"conv"``
            (default: MODEL.ROI_BOX_HEAD.NORM, ViLD's head), ``""`` (none: mmdet's Shared4Conv1FC,
            BARON) or a norm name (BN, SyncBN, GN, LN).
        MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS: hidden sizes of the ViLD / BARON box regressor: ``[]``
            (default: one Linear) or e.g. ``[1024]`` (Linear -> ReLU -> Linear, ovdet's
            ``reg_predictor_cfg``).
        DATALOADER.CHECK_IMAGES: verify that every training image file exists before training.
        TEST.IMS_PER_BATCH: images per inference batch (evaluation, proposal dumping); >1 is much faster
            on CPU.
        SOLVER.DETERMINISTIC_STEPS: reseed every RNG from ``SEED + iteration`` before each step and make
            the sampler resumable, so an interrupted run resumed with ``--resume`` ends with the same weights.
    """
    if not hasattr(cfg.MODEL, "VILD"):
        add_vild_config(cfg)
    if not hasattr(cfg.MODEL, "BARON"):
        add_baron_config(cfg)
    cfg.MODEL.BASIC_RESNET = CN()
    cfg.MODEL.BASIC_RESNET.DEPTH = 18
    cfg.MODEL.BASIC_RESNET.WIDTH = 64
    cfg.DATASETS.TOY = CN()
    cfg.DATASETS.TOY.SEED = 0
    cfg.DATASETS.TOY.ROOT = ""
    cfg.DATASETS.TOY.OVERRIDES = []
    cfg.INPUT.LSJ = CN()
    cfg.INPUT.LSJ.ENABLED = False
    cfg.INPUT.LSJ.MIN_SCALE = 0.1
    cfg.INPUT.LSJ.MAX_SCALE = 2.0
    cfg.INPUT.LSJ.SIZE = 1024
    cfg.MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD = True
    cfg.MODEL.ROI_BOX_HEAD.FC_NORM = "conv"
    cfg.MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS = []
    cfg.DATALOADER.CHECK_IMAGES = True
    cfg.TEST.IMS_PER_BATCH = 1
    cfg.SOLVER.DETERMINISTIC_STEPS = True
    return cfg
