"""MaskCLIP dense features from a frozen CLIP image encoder, and MaskCLIP's logit refinements.

Follows chongzhou96/MaskCLIP (``mmseg/models/backbones/vit.py``, ``decode_heads/maskclip_head.py``):

* ResNet (``ModifiedResNet``): the trunk up to res5, then the attention pool's ``v_proj`` and ``c_proj``
  applied per location as 1x1 convolutions. Query/key are dropped and, as in the official head, the
  positional embedding is *not* added on this path. Keys for key smoothing: ``k_proj`` per location.
* ViT: all blocks but the last as usual (positional embeddings bicubically interpolated to the input
  grid); the last block computes only its value path, ``x + out_proj(v(ln_1(x)))``, then
  ``+ mlp(ln_2(.))``, then ``ln_post`` and the projection. Keys: ``out_proj(k(ln_1(x)))`` of the last
  block, as in the official backbone (it sends q, k and v through ``out_proj``).

The ViT pass can record the attention maps of its last blocks (``record_attention``), the hook CLIP-ES's
class-aware attention refinement needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import Tensor, nn

__all__ = [
    "DenseOutput",
    "dense_kind",
    "dense_stride",
    "vit_dense_forward",
    "resnet_dense_forward",
    "interpolate_pos_embed",
    "prompt_denoise",
    "key_smoothing",
    "refine_logits",
]


@dataclass
class DenseOutput:
    """Result of a dense pass.

    features: ``[B, D, h, w]`` joint-space features (not normalized).
    keys: ``[B, C, h, w]`` last-layer keys (only when requested).
    attentions: per recorded block, ``[B, heads, 1 + h*w, 1 + h*w]`` attention weights (token 0 = class token).
    """

    features: Tensor
    keys: Tensor | None = None
    attentions: list[Tensor] = field(default_factory=list)


def dense_kind(visual: nn.Module) -> str:
    """ "vit" or "resnet"; ``NotImplementedError`` for image towers without a MaskCLIP dense path."""
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    if isinstance(visual, VisionTransformer):
        blocks = visual.transformer.resblocks
        if visual.attn_pool is not None or not all(
            isinstance(b, ResidualAttentionBlock) for b in blocks
        ):
            raise NotImplementedError(
                "dense (MaskCLIP) features need a plain open_clip ViT (no attentional "
                "pooler, default residual attention blocks)"
            )
        return "vit"
    raise NotImplementedError(
        f"dense (MaskCLIP) features are not implemented for {type(visual).__name__}"
    )


def dense_stride(visual: nn.Module) -> int:
    """Input pixels per dense-feature cell: the patch size (ViT) or 32 (ResNet)."""
    if dense_kind(visual) == "resnet":
        return 32
    ph, pw = visual.patch_size
    if ph != pw:
        raise NotImplementedError(f"non-square patches {visual.patch_size} are not supported")
    return ph


def interpolate_pos_embed(
    pos: Tensor, grid: tuple[int, int], new_grid: tuple[int, int], *, mode: str = "bicubic"
) -> Tensor:
    """``[1 + gh*gw, C]`` class + grid positional embedding -> ``[1 + h*w, C]``, the grid part
    resized with ``mode`` (align_corners False): "bicubic" (MaskCLIP's mmseg ViT) or "bilinear"
    (CLIP-ES ``clip/model.py`` ``upsample_pos_emb``)."""
    if tuple(grid) == tuple(new_grid):
        return pos
    cls_pos, grid_pos = pos[:1], pos[1:]
    grid_pos = grid_pos.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos.float(), size=new_grid, mode=mode, align_corners=False)
    grid_pos = grid_pos.to(pos.dtype).permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls_pos, grid_pos])


def _qkv_weights(attn: nn.MultiheadAttention) -> tuple[list[Tensor], list[Tensor | None]]:
    c = attn.embed_dim
    if attn.in_proj_weight is not None:
        weights = list(attn.in_proj_weight.split(c))
    else:
        weights = [attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight]
    biases = (
        list(attn.in_proj_bias.split(c)) if attn.in_proj_bias is not None else [None, None, None]
    )
    return weights, biases


def _block_with_attention(block: ResidualAttentionBlock, x: Tensor) -> tuple[Tensor, Tensor]:
    """A standard block on NLD tokens that also returns its per-head attention weights."""
    y = block.ln_1(x)
    out, attn = block.attn(y, y, y, need_weights=True, average_attn_weights=False)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x))), attn


def _value_path(block: ResidualAttentionBlock, x: Tensor) -> tuple[Tensor, Tensor]:
    """MaskCLIP's last block on NLD tokens: the value path and the (out-projected) keys."""
    weights, biases = _qkv_weights(block.attn)
    y = block.ln_1(x)
    v = block.attn.out_proj(F.linear(y, weights[2], biases[2]))
    k = block.attn.out_proj(F.linear(y, weights[1], biases[1]))
    x = x + block.ls_1(v)
    return x + block.ls_2(block.mlp(block.ln_2(x))), k


def _to_block_layout(x: Tensor, batch_first: bool) -> Tensor:
    return x if batch_first else x.transpose(0, 1)


def vit_dense_forward(
    visual: VisionTransformer, x: Tensor, *, return_keys: bool = False, record_attention: int = 0
) -> DenseOutput:
    """MaskCLIP dense pass of an open_clip ViT.

    Args:
        visual: the image tower.
        x: ``[B, 3, H, W]`` normalized images; ``H, W`` need not match the training size (positional
            embeddings are interpolated; pixels beyond a multiple of the patch size are dropped).
        return_keys: also return the last block's keys ``[B, C, h, w]``.
        record_attention: record attention weights of the last ``n`` blocks (the last block's map is the
            attention it would have computed; its output still takes the value path).
    """
    dense_kind(visual)
    tokens = visual.conv1(x)  # [B, C, h, w]
    b, c, h, w = tokens.shape
    tokens = tokens.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(tokens.dtype).view(1, 1, -1).expand(b, -1, -1)
    tokens = torch.cat([cls, tokens], dim=1)
    tokens = tokens + interpolate_pos_embed(
        visual.positional_embedding, visual.grid_size, (h, w)
    ).to(tokens.dtype)
    tokens = visual.ln_pre(tokens)  # patch dropout is inactive in eval

    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    first_recorded = len(blocks) - record_attention
    attentions = []
    tokens = _to_block_layout(tokens, batch_first)
    for i, block in enumerate(blocks[:-1]):
        if i >= first_recorded:
            tokens, attn = _block_with_attention(block, tokens)
            attentions.append(attn)
        else:
            tokens = block(tokens)
    last = blocks[-1]
    if record_attention > 0:
        attentions.append(_block_with_attention(last, tokens)[1])
    tokens = _to_block_layout(tokens, batch_first)  # NLD (layout-agnostic below)
    out, keys = _value_path(last, tokens)
    out = visual.ln_post(out[:, 1:])
    if visual.proj is not None:
        out = out @ visual.proj
    features = out.transpose(1, 2).reshape(b, -1, h, w)
    key_map = keys[:, 1:].transpose(1, 2).reshape(b, c, h, w) if return_keys else None
    return DenseOutput(features=features, keys=key_map, attentions=attentions)


def _dilated_average(x: Tensor, size: int, dilation: int) -> Tensor:
    """``AvgPool2d(size)`` evaluated at every location (stride 1, taps ``dilation`` apart), same-size output."""
    pad = (size - 1) * dilation
    weight = x.new_full((x.shape[1], 1, size, size), 1.0 / size**2)
    return F.conv2d(
        F.pad(x, (0, pad, 0, pad), mode="replicate"), weight, dilation=dilation, groups=x.shape[1]
    )


def _bottleneck_dense(
    block: nn.Module, x: Tensor, *, dilation: int, keep_resolution: bool
) -> tuple[Tensor, int]:
    """One open_clip ``Bottleneck`` whose 3x3 conv runs at ``dilation``; with ``keep_resolution`` its
    stride turns into dilation of everything after it (the a-trous / shift-and-stitch identity: the
    result sampled every ``stride`` pixels equals the strided block). Returns (output, next dilation)."""
    stride = block.stride
    dense = keep_resolution and stride > 1

    def pool(t: Tensor) -> Tensor:
        if stride == 1:
            return t
        return _dilated_average(t, stride, dilation) if dense else F.avg_pool2d(t, stride)

    out = block.act1(block.bn1(block.conv1(x)))
    out = block.act2(
        block.bn2(
            F.conv2d(out, block.conv2.weight, block.conv2.bias, padding=dilation, dilation=dilation)
        )
    )
    out = block.bn3(block.conv3(pool(out)))
    if block.downsample is not None:
        identity = pool(x)
        for name, layer in block.downsample.named_children():
            if name != "-1":  # "-1" is the strided AvgPool2d, done above
                identity = layer(identity)
    else:
        identity = x
    return block.act3(out + identity), dilation * stride if dense else dilation


def resnet_dense_forward(
    visual: ModifiedResNet, x: Tensor, *, return_keys: bool = False, output_stride: int = 32
) -> DenseOutput:
    """MaskCLIP dense pass of an open_clip ModifiedResNet: ``c_proj(v_proj(res5))`` per location.

    ``output_stride`` 32 is the plain network (MaskCLIP's R50 configs); 16 and 8 keep res5 (and res4) at
    higher resolution by turning their strides into dilations (MaskCLIP's ``r50dc5`` configs use 16), the
    same weights evaluated densely. ``x``: ``[B, 3, H, W]`` -> features ``[B, D, H / os, W / os]``.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"resnet output_stride must be 8, 16 or 32, got {output_stride}")
    feats, dilation = visual.stem(x), 1
    dense_layers = {32: (), 16: (4,), 8: (3, 4)}[output_stride]
    for index, layer in enumerate(
        (visual.layer1, visual.layer2, visual.layer3, visual.layer4), start=1
    ):
        for block in layer:
            feats, dilation = _bottleneck_dense(
                block, feats, dilation=dilation, keep_resolution=index in dense_layers
            )
    pool = visual.attnpool
    per_loc = feats.permute(0, 2, 3, 1)  # [B, h, w, C]
    features = pool.c_proj(pool.v_proj(per_loc)).permute(0, 3, 1, 2)
    keys = pool.k_proj(per_loc).permute(0, 3, 1, 2) if return_keys else None
    return DenseOutput(features=features, keys=keys)


def prompt_denoise(logits: Tensor, *, threshold: float, temperature: float = 100.0) -> Tensor:
    """MaskCLIP prompt denoising: classes whose image-wide max ``softmax(temperature * logits)`` is below
    ``threshold`` get logit -100. ``logits``: ``[B, N, h, w]`` cosine logits; returns a new tensor."""
    probs = F.softmax(logits * temperature, dim=1)
    weak = probs.flatten(2).amax(dim=2) < threshold  # [B, N]
    return logits.masked_fill(weak[:, :, None, None], -100.0)


def key_smoothing(
    logits: Tensor,
    keys: Tensor,
    *,
    threshold: float,
    temperature: float = 100.0,
    key_norm: str = "spatial",
) -> Tensor:
    """MaskCLIP key smoothing.

    ``p = softmax(temperature * logits)`` per pixel; at pixels whose max probability is below
    ``threshold``, ``p`` is replaced by ``A @ p`` with the key affinity ``A = k_n k_n^T`` of L2-normalized keys.

    Args:
        logits: ``[B, N, h, w]`` cosine logits.
        keys: ``[B, C, h, w]``.
        key_norm: "spatial" (default, the official code) normalizes each key channel over the
            locations: chongzhou96/MaskCLIP@245d31f ``decode_heads/maskclip_head.py``
            ``refine_output`` calls ``F.normalize(k, p=2)`` on ``k [N, HW, C]``, whose default
            ``dim=1`` is the spatial one. "channel" normalizes each location's key (a cosine
            affinity, as the paper describes it), kept as an option.

    Returns:
        ``[B, N, h, w]`` smoothed class scores (probability-like, not logits).
    """
    b, n, h, w = logits.shape
    probs = F.softmax(logits * temperature, dim=1).flatten(2).transpose(1, 2)  # [B, hw, N]
    k = keys.flatten(2).transpose(1, 2).float()  # [B, hw, C]
    if key_norm == "channel":
        k = F.normalize(k, dim=2)
    elif key_norm == "spatial":
        k = F.normalize(k, dim=1)
    else:
        raise ValueError(f"key_norm must be 'channel' or 'spatial', got {key_norm!r}")
    smoothed = (k @ k.transpose(1, 2)) @ probs
    unsure = probs.amax(dim=2, keepdim=True) < threshold
    out = torch.where(unsure, smoothed, probs)
    return out.transpose(1, 2).reshape(b, n, h, w)


def refine_logits(
    logits: Tensor,
    keys: Tensor | None,
    *,
    key_smoothing_thresh: float | None,
    prompt_denoise_thresh: float | None,
    key_norm: str = "spatial",
) -> Tensor:
    """MaskCLIP's order: prompt denoising on the logits, then key smoothing."""
    if prompt_denoise_thresh is not None:
        logits = prompt_denoise(logits, threshold=prompt_denoise_thresh)
    if key_smoothing_thresh is not None:
        if keys is None:
            raise ValueError("key smoothing needs the keys of the dense pass")
        logits = key_smoothing(logits, keys, threshold=key_smoothing_thresh, key_norm=key_norm)
    return logits
