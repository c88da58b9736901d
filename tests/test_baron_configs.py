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
    assert sampling.AREA_RATIO_THRESH == 0.01  # ovdet sampling_cfg area_ratio_thr
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
    # ovdet COCO test_cfg.rcnn.score_thr 0.01; schedule_90k.py warm-up 1000 iterations
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.01 and cfg.SOLVER.WARMUP_ITERS == 1000
    ensemble = load_config("baron_ensemble_r50.yaml")
    assert ensemble.MODEL.VILD.ENSEMBLE and ensemble.MODEL.BARON.ENSEMBLE_BACKGROUND
    assert ensemble.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.01


def test_lvis_recipe():
    cfg = load_config("baron_r50_lvis.yaml")
    baron = cfg.MODEL.BARON
    assert cfg.DATASETS.TRAIN == ("ov_lvis_train_base",) and cfg.MODEL.MASK_ON
    assert (baron.SAMPLING.TOPK, baron.SAMPLING.MAX_GROUPS, baron.NUM_WORDS) == (500, 6, 4)
    assert (baron.BAG.TEMPERATURE, baron.SINGLE.TEMPERATURE) == (20.0, 30.0)
    assert cfg.MODEL.VILD.TEMPERATURE == pytest.approx(1 / 100)
    assert baron.TEST_TEMPERATURE == pytest.approx(0.7 / 100)
    # ovdet LVIS: ClassBalancedDataset(oversample_thr=1e-3), clip_grad max_norm 35 (L2),
    # score_thr 1e-4, 300 detections, schedule_45k.py, lr 0.02 x 4
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    assert cfg.DATALOADER.REPEAT_THRESHOLD == 0.001
    assert cfg.SOLVER.DETERMINISTIC_STEPS  # the resumable loader repeats ceil(r) times (mmdet)
    clip = cfg.SOLVER.CLIP_GRADIENTS  # mmengine clips all gradients together: "full_model"
    assert (clip.ENABLED, clip.CLIP_TYPE, clip.CLIP_VALUE, clip.NORM_TYPE) == (
        True,
        "full_model",
        35,
        2,
    )
    assert list(cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES) == []  # LVIS: the 1203 classes
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.0001 and cfg.TEST.DETECTIONS_PER_IMAGE == 300
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS) == (
        45000,
        (30000, 40000),
        1000,
    )
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.08)
    assert baron.SAMPLING.AREA_RATIO_THRESH == 0.01


def test_ov_coco_test_vocabulary_is_the_80_coco_classes(tmp_path):
    """ovdet's OV-COCO test scores the 80 COCO classes (coco_clip_hand_craft_attn12.npy): the 15
    outside OV-COCO's 65 are MODEL.VILD.CLASSES.TEST_EXTRA_NAMES; the key survives a dump / load."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    from distill.vocab import OV_COCO_BASE_IDS, OV_COCO_NOVEL_IDS

    ov_coco = set(OV_COCO_BASE_IDS) | set(OV_COCO_NOVEL_IDS)
    outside = sorted(c["name"] for c in COCO_CATEGORIES if c["isthing"] and c["id"] not in ov_coco)
    assert len(outside) == 15
    for name in ("baron_r50.yaml", "baron_ensemble_r50.yaml"):
        cfg = load_config(name)
        assert sorted(cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES) == outside, name
    (tmp_path / "config.yaml").write_text(cfg.dump(), encoding="utf-8")
    again = load_config(tmp_path / "config.yaml")
    assert list(again.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES) == list(
        cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES
    )


def test_lvis_header_states_the_detpro_embeddings_and_no_false_claim():
    from detectors.config import resolve_config_file

    header = resolve_config_file("baron_r50_lvis.yaml").read_text(encoding="utf-8")
    assert "never released" not in header
    assert "DetPro" in header and "hand-written prompts" in header


def test_lvis_test_temperature_reaches_both_ensemble_branches():
    """ovdet's test_cls_temp (100 / 0.7) replaces cls_temp at inference in pred_cls_logits, which
    the ensemble's kd branch calls too: the predictor's logits use TEST_TEMPERATURE in eval mode."""
    import torch
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from detectors.modeling import BaronOutputLayers
    from distill.text_encoder import PseudoTextEncoder, TextEncoderConfig

    encoder = PseudoTextEncoder(
        TextEncoderConfig(width=8, layers=1, heads=2, context_length=8, embed_dim=2)
    )
    predictor = BaronOutputLayers(
        ShapeSpec(channels=4),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        class_embeddings=torch.tensor([[1.0, 0.0]]),
        class_names=["one"],
        text_encoder=encoder,
        num_words=1,
        temperature=0.01,
        test_temperature=0.007,
    )
    embedding = torch.tensor([[0.6, 0.8]])
    assert predictor.class_logits(embedding, background=False).item() == pytest.approx(60.0)
    predictor.eval()
    assert predictor.class_logits(embedding, background=False).item() == pytest.approx(0.6 / 0.007)


def test_toy_budget_matches_vild():
    baron, vild = load_config("toy/baron.yaml"), load_config("toy/vild.yaml")
    for key in ("MAX_ITER", "IMS_PER_BATCH", "BASE_LR", "STEPS", "WARMUP_ITERS"):
        assert baron.SOLVER[key] == vild.SOLVER[key], key
    assert (
        baron.MODEL.BACKBONE == vild.MODEL.BACKBONE
        and baron.MODEL.BASIC_RESNET == vild.MODEL.BASIC_RESNET
    )
    assert baron.MODEL.VILD.TEACHER == vild.MODEL.VILD.TEACHER
