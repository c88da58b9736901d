"""ViLD and BARON students: backbone, box head, text-embedding predictor, RoI heads and meta-architecture,
registered in Detectron2's registries on import."""

from .backbone import build_basic_resnet_fpn_backbone
from .baron_heads import BaronROIHeads
from .baron_predictor import BaronOutputLayers, BoxPositionEmbedding
from .baron_sampler import Bags, NeighborhoodSampler
from .box_head import ViLDConvFCHead
from .meta_arch import BaronRCNN, ViLDRCNN
from .roi_heads import DistillTargets, ViLDROIHeads, training_vocabulary
from .rpn_head import DetachedObjectnessRPNHead
from .vild_predictor import ViLDOutputLayers, cosine_logits, ensemble_scores

__all__ = [
    "build_basic_resnet_fpn_backbone",
    "ViLDConvFCHead",
    "DetachedObjectnessRPNHead",
    "ViLDRCNN",
    "DistillTargets",
    "ViLDROIHeads",
    "training_vocabulary",
    "ViLDOutputLayers",
    "cosine_logits",
    "ensemble_scores",
    "BaronRCNN",
    "BaronROIHeads",
    "BaronOutputLayers",
    "BoxPositionEmbedding",
    "Bags",
    "NeighborhoodSampler",
]
