"""Shipped configs load with ovdistill's keys; the CLI's config resolution and overrides."""

import pytest

pytest.importorskip("detectron2")

from detectors.cli import argument_parser  # noqa: E402
from detectors.config import (  # noqa: E402
    CONFIG_ROOT,
    load_config,
    parse_overrides,
    resolve_config_file,
)

DETECTION_CONFIGS = sorted(
    p.relative_to(CONFIG_ROOT).as_posix()
    for p in [*CONFIG_ROOT.glob("*.yaml"), *CONFIG_ROOT.glob("toy/*.yaml")]
)


@pytest.mark.parametrize("name", DETECTION_CONFIGS)
def test_config_loads(name):
    cfg = load_config(name)
    assert cfg.MODEL.WEIGHTS == ""  # nothing pretrained is downloaded
    if cfg.MODEL.META_ARCHITECTURE == "ViLDRCNN":
        assert (
            cfg.MODEL.ROI_HEADS.NAME == "ViLDROIHeads"
            and cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG
        )
        assert cfg.MODEL.VILD.TEMPERATURE == 0.01
        if cfg.MODEL.VILD.DISTILL.ENABLED:
            resolve_config_file(cfg.MODEL.VILD.DISTILL.PROPOSAL_CONFIG)


def test_recipe_values():
    cfg = load_config("vild_r50.yaml")
    assert cfg.DATASETS.TRAIN == ("ov_coco_train_base",) and cfg.DATASETS.TEST == ("ov_coco_val",)
    assert cfg.MODEL.VILD.DISTILL.WEIGHT == 0.5 and cfg.MODEL.VILD.DISTILL.MAX_PER_IMAGE == 300
    assert cfg.SOLVER.MAX_ITER == 180000 and cfg.SOLVER.BASE_LR == 0.32 and cfg.INPUT.LSJ.ENABLED
    lvis = load_config("vild_ensemble_r50_lvis.yaml")
    assert (
        lvis.MODEL.MASK_ON
        and lvis.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK
        and lvis.MODEL.VILD.ENSEMBLE
    )
    assert lvis.TEST.DETECTIONS_PER_IMAGE == 300
    toy = load_config("toy/vild.yaml")
    assert (
        toy.MODEL.DEVICE == "cpu"
        and toy.DATALOADER.NUM_WORKERS == 0
        and toy.SOLVER.DETERMINISTIC_STEPS
    )
    assert toy.MODEL.RESNETS.NORM == "BN"


def test_vild_recipe_keys_follow_the_official_code():
    """tensorflow/tpu@7dc921f: box loss / 4 x foreground RoIs (modeling/losses.py); rare logits
    multiplied by 0 on LVIS (projects/vild/modeling/vild_losses.py); no decay on BN / biases."""
    for name in ("vild_r50.yaml", "vild_r50_lvis.yaml", "vild_text_r50.yaml", "toy/vild.yaml"):
        cfg = load_config(name)
        assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER == "foreground_x4", name
        assert cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA == 1.0, name
        assert cfg.SOLVER.WEIGHT_DECAY_NORM == 0.0 and cfg.SOLVER.WEIGHT_DECAY_BIAS == 0.0, name
    assert load_config("vild_r50_lvis.yaml").MODEL.VILD.UNSEEN_TRAIN_LOGITS == "zero"
    assert load_config("vild_ensemble_r50_lvis.yaml").MODEL.VILD.UNSEEN_TRAIN_LOGITS == "zero"
    assert load_config("vild_r50.yaml").MODEL.VILD.UNSEEN_TRAIN_LOGITS == "remove"  # OV-COCO
    for name in ("baron_r50.yaml", "toy/baron.yaml"):  # mmdet: avg_factor = sampled RoIs
        assert load_config(name).MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_NORMALIZER == "sampled", name
    toy_baron = load_config("toy/baron.yaml")
    assert toy_baron.SOLVER.WEIGHT_DECAY_BIAS == toy_baron.SOLVER.WEIGHT_DECAY


def test_config_names_resolve_relative_to_configs(tmp_path):
    assert resolve_config_file("toy/vild") == CONFIG_ROOT / "toy" / "vild.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text(
        "_BASE_: " + str(CONFIG_ROOT / "toy" / "vild.yaml") + "\nSOLVER:\n  MAX_ITER: 7\n"
    )
    assert load_config(str(own)).SOLVER.MAX_ITER == 7
    with pytest.raises(FileNotFoundError, match="nope"):
        resolve_config_file("nope.yaml")


def test_cli_accepts_config_alias_and_overrides():
    args = argument_parser().parse_args(
        ["--config", "toy/vild.yaml", "--eval-only", "SOLVER.MAX_ITER", "5"]
    )
    assert (
        args.config_file == "toy/vild.yaml"
        and args.eval_only
        and args.opts == ["SOLVER.MAX_ITER", "5"]
    )
    assert argument_parser().parse_args(["--config-file", "x.yaml"]).config_file == "x.yaml"


def test_parse_overrides():
    assert parse_overrides(["n_train=8", "name=vit", "scale=0.5"], key="K") == {
        "n_train": 8,
        "name": "vit",
        "scale": 0.5,
    }
    with pytest.raises(ValueError, match="K"):
        parse_overrides(["oops"], key="K")
