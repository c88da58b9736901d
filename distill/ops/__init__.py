"""Custom ops: fused RoI-align embedding pooling (``roi_embed``) and its PyTorch reference."""

from distill.ops.roi_embed import roi_embed, roi_embed_reference

__all__ = ["roi_embed", "roi_embed_reference"]
