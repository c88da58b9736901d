"""BARON configs carry methods.md's recipe; the toy config has toy/vild.yaml's budget."""

import pytest

pytest.importorskip("detectron2")

from detectors.config import load_config  # noqa: E402


def test_ov_coco_recipe():
    cfg = load_config("baron_r50.yaml")
    baron, sampling = cfg.MODEL.BARON, cfg.MODEL.BARON.SAMPLING
    assert (
        cfg.MODEL.META_ARCHITECTURE == "BaronRCNN" and cfg.MODEL.ROI_HEADS.NAME == "BaronROIHeads"
    )
    assert cfg.DATASETS.TRAIN == ("ov_coco_train_base",) and cfg.DATASETS.TEST == ("ov_coco_val",)
    assert cfg.MODEL.VILD.TEACHER.MODEL_NAME == "ViT-B-32" and not cfg.MODEL.VILD.DISTILL.ENABLED
    assert (
        sampling.TOPK,
        sampling.OBJECTNESS_THRESH,
        sampling.ASPECT_THRESH,
        sampling.NMS_THRESH,
    ) == (300, 0.85, 0.25, 0.1)
    assert (
        sampling.ALPHA,
        sampling.BASE_PROBABILITY,
        sampling.CUTOFF_THRESH,
        sampling.INTERVAL,
    ) == (3.0, 0.3, 0.3, -0.1)
    assert (sampling.MAX_GROUPS, sampling.MAX_PERMUTATIONS, sampling.USE_GT) == (3, 2, True)
    assert (baron.NUM_WORDS, baron.WORD_DROPOUT, baron.QUEUE_SIZE, baron.BG_WEIGHT) == (
        6,
        0.5,
        1024,
        0.7,
    )
    assert (
        baron.BAG.TEMPERATURE,
        baron.BAG.WEIGHT,
        baron.SINGLE.TEMPERATURE,
        baron.SINGLE.WEIGHT,
    ) == (30.0, 1.0, 50.0, 0.1)
    assert cfg.MODEL.VILD.TEMPERATURE == pytest.approx(1 / 50)
    assert (
        cfg.SOLVER.MAX_ITER,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.WEIGHT_DECAY,
        cfg.SOLVER.AMP.ENABLED,
    ) == (90000, 0.04, 2.5e-5, True)
    assert min(cfg.INPUT.MIN_SIZE_TRAIN) == 640 and max(cfg.INPUT.MIN_SIZE_TRAIN) == 800
    assert load_config("baron_ensemble_r50.yaml").MODEL.VILD.ENSEMBLE


def test_lvis_recipe():
    cfg = load_config("baron_r50_lvis.yaml")
    baron = cfg.MODEL.BARON
    assert cfg.DATASETS.TRAIN == ("ov_lvis_train_base",) and cfg.MODEL.MASK_ON
    assert (baron.SAMPLING.TOPK, baron.SAMPLING.MAX_GROUPS, baron.NUM_WORDS) == (500, 6, 4)
    assert (baron.BAG.TEMPERATURE, baron.SINGLE.TEMPERATURE) == (20.0, 30.0)
    assert cfg.MODEL.VILD.TEMPERATURE == pytest.approx(1 / 100)
    assert baron.TEST_TEMPERATURE == pytest.approx(0.7 / 100)


def test_toy_budget_matches_vild():
    baron, vild = load_config("toy/baron.yaml"), load_config("toy/vild.yaml")
    for key in ("MAX_ITER", "IMS_PER_BATCH", "BASE_LR", "STEPS", "WARMUP_ITERS"):
        assert baron.SOLVER[key] == vild.SOLVER[key], key
    assert (
        baron.MODEL.BACKBONE == vild.MODEL.BACKBONE
        and baron.MODEL.BASIC_RESNET == vild.MODEL.BASIC_RESNET
    )
    assert baron.MODEL.VILD.TEACHER == vild.MODEL.VILD.TEACHER
