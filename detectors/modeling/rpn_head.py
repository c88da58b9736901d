"""BARON's RPN head: objectness from detached features through an extra conv (``DetachRPNHead``).

Official: wusize/ovdet@d74a20c ``ovdet/models/dense_heads/rpn_head.py`` (``DetachRPNHead``, used
by the OV-COCO configs; the OV-LVIS configs use the standard head). The shared 3x3 conv + ReLU
feeds the box deltas as usual; the objectness branch reads ``x.detach()`` through its own 3x3 conv, ReLU and 1x1
conv, so the objectness loss never reaches the shared conv or the backbone ("to avoid suppression on
novel categories").
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from torch import nn

__all__ = ["DetachedObjectnessRPNHead"]


@RPN_HEAD_REGISTRY.register()
class DetachedObjectnessRPNHead(StandardRPNHead):
    """:class:`StandardRPNHead` whose objectness logits are ``1x1(relu(3x3(conv(x).detach())))``.

    ``forward(features: list of [N, C, H_i, W_i]) -> (objectness [N, A, H_i, W_i] per level,
    deltas [N, A * box_dim, H_i, W_i] per level)``. The extra convs are initialized like the rest
    of the head (normal, std 0.01, zero bias; mmdet's ``RPNHead`` init in the official code).
    """

    @configurable
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        channels = self.objectness_logits.in_channels
        anchors = self.objectness_logits.out_channels
        self.objectness_logits = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, anchors, kernel_size=1, stride=1),
        )
        for layer in self.objectness_logits:
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        objectness, deltas = [], []
        for x in features:
            hidden = self.conv(x)
            objectness.append(self.objectness_logits(hidden.detach()))
            deltas.append(self.anchor_deltas(hidden))
        return objectness, deltas
