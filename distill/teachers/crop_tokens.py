"""BARON's image tokens of a crop: the ``return_tokens`` path of ovdet's CLIP image encoders.

wusize/ovdet@d74a20c ``ovdet/models/vlms/clip/image_encoder.py`` ``encode_image(return_tokens=True)``
(used by ``ovdet/methods/baron/baron_kd.py`` ``_bbox_clip_image`` on the bag crops):

* ViT (``CLIPViT``; the last block is ``common.py`` ``ResidualAttentionBlock.forward`` with
  ``return_tokens=True, cls_indices=0``): all blocks but the last as usual; in the last one, patch
  token ``i`` becomes the CLASS token's residual stream plus ``out_proj(v_proj(ln_1(x_i)))`` (no
  attention mixing), then ``+ mlp(ln_2(.))``; then ``ln_post`` and the projection. MaskCLIP's dense
  path (``distill.teachers.maskclip``) keeps each token's own residual instead.
* ResNet (``CLIPResNet`` / ``AttentionPool2d.forward(return_tokens=True)``): res5 flattened, the mean
  token prepended, the attention pool's positional embedding added, then ``c_proj(v_proj(.))`` per
  location. Unlike MaskCLIP's ResNet dense path, the positional embedding IS added.

Both run on crops at the model's input size (the positional embeddings' own grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import Tensor

from distill.teachers.maskclip import dense_kind

__all__ = ["crop_tokens_forward", "vit_crop_tokens", "resnet_crop_tokens"]


def vit_crop_tokens(visual: VisionTransformer, x: Tensor) -> Tensor:
    """``[B, D, h, w]`` tokens (not normalized) of ``[B, 3, H, W]`` normalized crops at the input
    size: the class-token-residual value path of the last block, ``ln_post``, projection."""
    dense_kind(visual)
    grid = visual.conv1(x)  # [B, C, h, w]
    b, c, h, w = grid.shape
    if (h, w) != tuple(visual.grid_size):
        raise ValueError(
            f"crop tokens need crops at the teacher's input size (a {tuple(visual.grid_size)} "
            f"token grid), got a {h}x{w} grid"
        )
    tokens = grid.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(tokens.dtype).view(1, 1, -1).expand(b, -1, -1)
    tokens = torch.cat([cls, tokens], dim=1) + visual.positional_embedding.to(tokens.dtype)
    tokens = visual.ln_pre(tokens)  # patch dropout is inactive in eval
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    tokens = tokens if batch_first else tokens.transpose(0, 1)
    for block in blocks[:-1]:
        tokens = block(tokens)
    tokens = tokens if batch_first else tokens.transpose(0, 1)  # NLD
    last = blocks[-1]
    attn = last.attn
    weight = attn.in_proj_weight[2 * c :]
    bias = attn.in_proj_bias[2 * c :] if attn.in_proj_bias is not None else None
    value = attn.out_proj(F.linear(last.ln_1(tokens[:, 1:]), weight, bias))
    out = tokens[:, :1] + last.ls_1(value)
    out = out + last.ls_2(last.mlp(last.ln_2(out)))
    out = visual.ln_post(out)
    if visual.proj is not None:
        out = out @ visual.proj
    return out.transpose(1, 2).reshape(b, -1, h, w)


def resnet_crop_tokens(visual: ModifiedResNet, x: Tensor) -> Tensor:
    """``[B, D, h, w]`` tokens (not normalized) of ``[B, 3, H, W]`` normalized crops at the input
    size: ``c_proj(v_proj(res5 + positional embedding))`` per location."""
    feats = visual.stem(x)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        feats = layer(feats)
    b, _, h, w = feats.shape
    pool = visual.attnpool
    pos = pool.positional_embedding[1:]  # [h * w, C] (row 0 is the mean token's)
    if pos.shape[0] != h * w:
        raise ValueError(
            f"crop tokens need crops at the teacher's input size ({pos.shape[0]} attention-pool "
            f"positions), got a {h}x{w} res5 grid"
        )
    per_loc = feats.flatten(2).transpose(1, 2) + pos.to(feats.dtype)  # [B, h*w, C]
    out = pool.c_proj(pool.v_proj(per_loc))
    return out.transpose(1, 2).reshape(b, -1, h, w)


def crop_tokens_forward(visual: VisionTransformer | ModifiedResNet, x: Tensor) -> Tensor:
    """:func:`vit_crop_tokens` or :func:`resnet_crop_tokens` by the tower's kind."""
    if dense_kind(visual) == "resnet":
        return resnet_crop_tokens(visual, x)
    return vit_crop_tokens(visual, x)
