"""Distillation losses: pure functions (``functional``) and thin module wrappers (``modules``)."""

from .functional import (
    kl_distill,
    l1_region_distill,
    pixel_text_cross_entropy,
    pixel_text_logits,
    pseudo_label_cross_entropy,
    symmetric_infonce,
)
from .modules import (
    LOSSES,
    EmbeddingQueue,
    KLDistillLoss,
    L1RegionDistillLoss,
    PixelTextCrossEntropyLoss,
    PseudoLabelCrossEntropyLoss,
    QueuedInfoNCELoss,
    SymmetricInfoNCELoss,
    build_loss,
    register_loss,
)

__all__ = [
    "kl_distill",
    "l1_region_distill",
    "pixel_text_cross_entropy",
    "pixel_text_logits",
    "pseudo_label_cross_entropy",
    "symmetric_infonce",
    "LOSSES",
    "EmbeddingQueue",
    "KLDistillLoss",
    "L1RegionDistillLoss",
    "PixelTextCrossEntropyLoss",
    "PseudoLabelCrossEntropyLoss",
    "QueuedInfoNCELoss",
    "SymmetricInfoNCELoss",
    "build_loss",
    "register_loss",
]
