"""ViLD's / BARON's box head (convs and fully connected layers, each with optional norm and ReLU)
and the box regressor of their predictors (one Linear, or an MLP).

BARON's OV-COCO head (wusize/ovdet@d74a20c ``configs/_base_/models/faster-rcnn_r50_fpn_syncbn.py``,
``BaronShared4Conv1FCBBoxHead``): 4 convs with BN frozen in eval mode (``requires_grad=False``,
``norm_eval=True``; Detectron2's ``"FrozenBN"``), one fc without norm (mmdet's ConvFC heads never
normalize fcs: ``MODEL.ROI_BOX_HEAD.FC_NORM ""``) and the regressor ``reg_predictor_cfg`` =
Linear(1024, 1024) -> ReLU -> Linear(1024, 4) (``MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS [1024]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.roi_heads.box_head import ROI_BOX_HEAD_REGISTRY
from torch import nn

__all__ = ["ViLDConvFCHead", "build_box_regressor", "FC_NORM_AS_CONV"]

FC_NORM_AS_CONV = "conv"
"""``MODEL.ROI_BOX_HEAD.FC_NORM`` value: the fcs take the convs' norm (ROI_BOX_HEAD.NORM)."""


@ROI_BOX_HEAD_REGISTRY.register()
class ViLDConvFCHead(nn.Sequential):
    """``num_conv`` x (3x3 conv, norm, ReLU) then ``num_fc`` x (fc, norm, ReLU).

    Unlike Detectron2's ``FastRCNNConvFCHead``, the fully connected layers can be normalized too:
    ``MODEL.ROI_BOX_HEAD.FC_NORM`` ``"conv"`` (default) uses ``MODEL.ROI_BOX_HEAD.NORM``
    (BatchNorm1d for "BN"/"SyncBN"), as in ViLD's head (4 conv + 2 fc with batch norm); ``""``
    leaves them plain (BARON). ``conv_norm`` "FrozenBN" freezes the conv norms (BARON OV-COCO).
    Input ``[R, C, P, P]``, output ``[R, fc_dim]``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dims: list[int],
        fc_dims: list[int],
        conv_norm: str = "",
        fc_norm: str = "",
    ) -> None:
        super().__init__()
        if not conv_dims and not fc_dims:
            raise ValueError("ViLDConvFCHead needs at least one conv or fc layer")
        channels, size = input_shape.channels, (input_shape.height, input_shape.width)
        for k, dim in enumerate(conv_dims):
            conv = Conv2d(
                channels,
                dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, dim),
                activation=nn.ReLU(),
            )
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            self.add_module(f"conv{k + 1}", conv)
            channels = dim
        features = int(channels * np.prod(size))
        for k, dim in enumerate(fc_dims):
            if k == 0:
                self.add_module("flatten", nn.Flatten())
            fc = nn.Linear(features, dim, bias=not fc_norm)
            nn.init.kaiming_uniform_(fc.weight, a=1)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)
            self.add_module(f"fc{k + 1}", fc)
            if fc_norm:
                self.add_module(f"fc{k + 1}_norm", _fc_norm(fc_norm, dim))
            self.add_module(f"fc{k + 1}_relu", nn.ReLU())
            features = dim
        self._output_size = features if fc_dims else (channels, *size)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * head.NUM_CONV,
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "conv_norm": head.NORM,
            "fc_norm": head.NORM if head.FC_NORM == FC_NORM_AS_CONV else head.FC_NORM,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x

    @property
    def output_shape(self) -> ShapeSpec:
        out = self._output_size
        if isinstance(out, int):
            return ShapeSpec(channels=out)
        return ShapeSpec(channels=out[0], height=out[1], width=out[2])


def _fc_norm(norm: str, dim: int) -> nn.Module:
    """1-d counterpart of a Detectron2 norm name (BN / SyncBN -> BatchNorm1d / SyncBatchNorm, GN, LN)."""
    if norm == "BN":
        return nn.BatchNorm1d(dim)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(dim)
    if norm == "GN":
        return nn.GroupNorm(32, dim)
    if norm == "LN":
        return nn.LayerNorm(dim)
    raise ValueError(
        f"unsupported norm {norm!r} for the fully connected layers of ViLDConvFCHead "
        f"(use BN, SyncBN, GN, LN or '')"
    )


def build_box_regressor(
    in_features: int, out_features: int, *, hidden_dims: Sequence[int] = ()
) -> nn.Module:
    """``[R, in_features] -> [R, out_features]`` box deltas: one Linear without ``hidden_dims``
    (checkpoint keys ``weight`` / ``bias`` as before), else Linear -> ReLU per hidden size, then
    Linear (ovdet's ``reg_predictor_cfg``). Every Linear starts N(0, 0.001) with zero bias (mmdet's
    ``fc_reg`` init, applied to the whole module in ovdet)."""
    dims = [int(in_features), *(int(d) for d in hidden_dims), int(out_features)]
    if any(d <= 0 for d in dims[1:-1]):
        raise ValueError(f"MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS must be positive, got {hidden_dims}")
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(a, b)
        nn.init.normal_(linear.weight, std=0.001)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if k < len(dims) - 2:
            layers.append(nn.ReLU())
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
