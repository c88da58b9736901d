"""BARON's ``DetachedObjectnessRPNHead`` (ovdet's ``DetachRPNHead``) in a real Detectron2 RPN."""

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling.proposal_generator import build_proposal_generator  # noqa: E402
from detectron2.structures import Boxes, ImageList, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from detectors.config import load_config  # noqa: E402
from detectors.modeling import DetachedObjectnessRPNHead  # noqa: E402


def _rpn(head_name: str):
    cfg = get_cfg()
    cfg.MODEL.RPN.HEAD_NAME = head_name
    cfg.MODEL.RPN.IN_FEATURES = ["p2"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[8]]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 16
    torch.manual_seed(0)
    return build_proposal_generator(cfg, {"p2": ShapeSpec(channels=4, stride=4)})


def _losses(rpn, feature):
    images = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    target = Instances((32, 32), gt_boxes=Boxes(torch.tensor([[4.0, 4.0, 14.0, 14.0]])))
    rpn.train()
    with EventStorage():
        _, losses = rpn(images, {"p2": feature}, [target])
    return losses


def test_objectness_loss_reaches_neither_shared_conv_nor_backbone():
    rpn = _rpn("DetachedObjectnessRPNHead")
    head = rpn.rpn_head
    assert isinstance(head, DetachedObjectnessRPNHead)
    # official layers: shared 3x3 conv (+ReLU), deltas 1x1, objectness 3x3 -> ReLU -> 1x1
    assert [type(m).__name__ for m in head.objectness_logits] == ["Conv2d", "ReLU", "Conv2d"]
    assert head.objectness_logits[0].kernel_size == (3, 3)
    assert head.objectness_logits[2].kernel_size == (1, 1)
    feature = torch.randn(1, 4, 8, 8, requires_grad=True)
    losses = _losses(rpn, feature)
    losses["loss_rpn_cls"].backward()
    assert feature.grad is None or not feature.grad.any()
    assert head.conv.weight.grad is None or not head.conv.weight.grad.any()
    assert head.objectness_logits[0].weight.grad.abs().sum() > 0
    # the box deltas still train the shared conv and the features
    feature.grad = None
    losses = _losses(rpn, feature)
    (losses["loss_rpn_loc"] * 1e3).backward()
    assert feature.grad.abs().sum() > 0 and head.conv.weight.grad.abs().sum() > 0


def test_standard_head_lets_objectness_reach_the_features():
    """The old behaviour (Detectron2's StandardRPNHead): the same check fails there."""
    rpn = _rpn("StandardRPNHead")
    feature = torch.randn(1, 4, 8, 8, requires_grad=True)
    _losses(rpn, feature)["loss_rpn_cls"].backward()
    assert feature.grad.abs().sum() > 0


def test_baron_configs_select_the_head():
    assert load_config("baron_r50.yaml").MODEL.RPN.HEAD_NAME == "DetachedObjectnessRPNHead"
    assert load_config("baron_ensemble_r50.yaml").MODEL.RPN.HEAD_NAME == (
        "DetachedObjectnessRPNHead"
    )
    # ovdet's OV-LVIS configs use the standard head (CustomRPNHead); ViLD configs unchanged
    for name in ("baron_r50_lvis.yaml", "vild_r50.yaml", "toy/vild.yaml"):
        assert load_config(name).MODEL.RPN.HEAD_NAME == "StandardRPNHead", name
    # the toy BARON follows the OV-COCO recipe, in the attn12 space
    toy = load_config("toy/baron.yaml")
    assert toy.MODEL.RPN.HEAD_NAME == "DetachedObjectnessRPNHead"
    assert toy.MODEL.BARON.TEXT_SPACE == "attn12"
