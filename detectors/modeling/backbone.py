"""Basic-block ResNet-FPN of any width (Detectron2's R18/R34 builder fixes the width at 64)."""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

__all__ = ["build_basic_resnet_fpn_backbone", "BLOCKS_PER_STAGE"]

BLOCKS_PER_STAGE = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@BACKBONE_REGISTRY.register()
def build_basic_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """ResNet-{10,18,34} with stage widths ``W, 2W, 4W, 8W`` (``W = MODEL.BASIC_RESNET.WIDTH``) under an FPN.

    Uses ``MODEL.BASIC_RESNET.DEPTH``, ``MODEL.RESNETS.NORM`` / ``OUT_FEATURES``,
    ``MODEL.BACKBONE.FREEZE_AT`` and ``MODEL.FPN.*`` (P6 by max-pooling, as Detectron2's FPN builder).
    """
    depth, width = cfg.MODEL.BASIC_RESNET.DEPTH, cfg.MODEL.BASIC_RESNET.WIDTH
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.BASIC_RESNET.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}"
        )
    norm = cfg.MODEL.RESNETS.NORM
    stem = BasicStem(in_channels=input_shape.channels, out_channels=width, norm=norm)
    stages, in_channels = [], width
    for index, blocks in enumerate(BLOCKS_PER_STAGE[depth]):
        out_channels = width * 2**index
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=blocks,
                stride_per_block=[1 if index == 0 else 2] + [1] * (blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=norm,
            )
        )
        in_channels = out_channels
    bottom_up = ResNet(
        stem,
        stages,
        out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
