"""CLIP-ES softmax-GradCAM on a frozen open_clip image tower (ViT, or ResNet without attention refinement).

Follows linyq2117/CLIP-ES (``generate_cams_voc12.py``, ``clip/model.py``, its ``pytorch_grad_cam`` copy):

* The image is encoded at (close to) its own resolution; positional embeddings are interpolated
  bilinearly (``upsample_pos_emb`` in ``clip/model.py``, ``F.upsample(mode='bilinear')``, i.e.
  align_corners False; ``pos_embed_mode`` of :func:`softmax_gradcam`).
* ViT: all blocks but the last run without gradients (recording head-averaged attention maps); the last
  block runs normally with gradients enabled on its ``ln_1`` output, the Grad-CAM target layer. The image
  embedding is the mean of the patch tokens after ``ln_post``, projected to the joint space.
* ResNet: the Grad-CAM target is the attention pool's input (the res5 map); the embedding is the
  attention pool's output (its positional embedding interpolated to the grid). There is no
  patch-to-patch attention, so the class-aware attention refinement is not available.
* Scores: ``softmax(logit_scale * cos(image, text))`` over the text rows given (the image's labels +
  background prompts). For target ``k``: ``w = mean_{x,y} d p_k / d A``; ``cam = relu(sum_c w_c A_c)``,
  then rescaled to ``[0, 1]`` with ``(cam - min) / (max + 1e-7)`` as in pytorch-grad-cam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn

from distill.teachers.maskclip import dense_kind, dense_stride, interpolate_pos_embed

__all__ = [
    "GradCamOutput",
    "softmax_gradcam",
    "gradcam_from_gradients",
    "minmax_scale",
    "cam_input_size",
]

_EPS = 1e-7


@dataclass
class GradCamOutput:
    """Result of :func:`softmax_gradcam` for one image.

    cams: ``[K, h, w]`` float32 CAMs in ``[0, 1]`` on the feature grid, one per target.
    probs: ``[N]`` softmax scores over all text rows.
    attention: ``[h*w, h*w]`` patch-to-patch attention averaged over heads and the recorded blocks
        (class token removed); ``None`` for ResNet teachers or ``attention_layers=0``.
    """

    cams: Tensor
    probs: Tensor
    attention: Tensor | None

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.cams.shape[-2]), int(self.cams.shape[-1])


def minmax_scale(cam: Tensor) -> Tensor:
    """``(cam - min) / (max + 1e-7)`` over the last two dims (pytorch-grad-cam's ``scale_cam_image``).

    Note the denominator is the max of the *original* map, as in the reference (for a ReLU'd CAM the
    min is usually 0, so both agree). ``cam``: ``[..., h, w]``.
    """
    flat = cam.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    shifted = flat - low
    return (shifted / (shifted.amax(dim=-1, keepdim=True) + _EPS)).view_as(cam)


def gradcam_from_gradients(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM map ``relu(sum_c mean_{xy}(G_c) * A_c)`` (not rescaled).

    Args:
        activations: ``[C, h, w]`` target-layer activations.
        gradients: ``[C, h, w]`` gradient of the target score w.r.t. them.

    Returns:
        ``[h, w]``.
    """
    weights = gradients.mean(dim=(1, 2))
    return torch.relu(torch.einsum("c,chw->hw", weights, activations))


def cam_input_size(height: int, width: int, *, stride: int, scale: float = 1.0) -> tuple[int, int]:
    """CLIP-ES input size: ``ceil(scale * side / stride) * stride`` per side (at least one stride)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return (
        max(stride, math.ceil(scale * height / stride) * stride),
        max(stride, math.ceil(scale * width / stride) * stride),
    )


def _layout(x: Tensor, batch_first: bool) -> Tensor:
    """NLD <-> the blocks' layout (LND when ``batch_first`` is False; the swap is its own inverse)."""
    return x if batch_first else x.transpose(0, 1)


def _attention_block(block: nn.Module, x: Tensor, batch_first: bool) -> tuple[Tensor, Tensor]:
    """A standard open_clip block on NLD tokens; also returns its head-averaged attention ``[N, L, L]``."""
    y = _layout(block.ln_1(x), batch_first)
    out, attn = block.attn(y, y, y, need_weights=True, average_attn_weights=True)
    x = x + block.ls_1(_layout(out, batch_first))
    return x + block.ls_2(block.mlp(block.ln_2(x))), attn


def _vit_scores(
    visual: VisionTransformer,
    pixels: Tensor,
    text: Tensor,
    logit_scale: float,
    attention_layers: int,
    pos_embed_mode: str,
) -> tuple[Tensor, Tensor, list[Tensor], tuple[int, int]]:
    """ViT forward: ``(probs [N], leaf activations [1, L, C], attentions, grid)``."""
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    first_recorded = len(blocks) - attention_layers
    attentions: list[Tensor] = []
    with torch.no_grad():
        tokens = visual.conv1(pixels)  # [1, C, h, w]
        grid = (int(tokens.shape[-2]), int(tokens.shape[-1]))
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(tokens.dtype).view(1, 1, -1).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        tokens = tokens + interpolate_pos_embed(
            visual.positional_embedding, visual.grid_size, grid, mode=pos_embed_mode
        ).to(tokens.dtype)
        tokens = visual.ln_pre(tokens)
        for i, block in enumerate(blocks[:-1]):
            if i >= first_recorded:
                tokens, attn = _attention_block(block, tokens, batch_first)
                attentions.append(attn)
            else:
                tokens = _layout(block(_layout(tokens, batch_first)), batch_first)
    last = blocks[-1]
    leaf = last.ln_1(tokens).detach().requires_grad_(True)  # Grad-CAM target: ln_1 output
    y = _layout(leaf, batch_first)
    out, attn = last.attn(y, y, y, need_weights=True, average_attn_weights=True)
    if attention_layers > 0:
        attentions.append(attn.detach())
    x = tokens + last.ls_1(_layout(out, batch_first))
    x = x + last.ls_2(last.mlp(last.ln_2(x)))
    feat = visual.ln_post(x)[:, 1:].mean(dim=1)
    if visual.proj is not None:
        feat = feat @ visual.proj
    logits = logit_scale * F.normalize(feat, dim=-1) @ text.t()
    return logits.softmax(dim=-1)[0], leaf, attentions, grid


def _attnpool(pool: nn.Module, feats: Tensor, pos_embed_mode: str) -> Tensor:
    """open_clip's ``AttentionPool2d`` for the mean token only, positional embedding interpolated to the grid.

    ``feats``: ``[B, C, h, w]`` -> ``[B, D]``.
    """
    h, w = feats.shape[-2:]
    side = math.isqrt(pool.positional_embedding.shape[0] - 1)
    x = feats.flatten(2).permute(2, 0, 1)  # (hw)BC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    pos = interpolate_pos_embed(
        pool.positional_embedding, (side, side), (h, w), mode=pos_embed_mode
    )
    x = x + pos[:, None, :].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=x[:1],
        key=x,
        value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=False,
        need_weights=False,
    )
    return out[0]


def _resnet_scores(
    visual: ModifiedResNet, pixels: Tensor, text: Tensor, logit_scale: float, pos_embed_mode: str
) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """ResNet forward: ``(probs [N], leaf res5 activations [1, C, h, w], grid)``."""
    with torch.no_grad():
        feats = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
    leaf = feats.detach().requires_grad_(True)
    feat = _attnpool(visual.attnpool, leaf, pos_embed_mode)
    logits = logit_scale * F.normalize(feat, dim=-1) @ text.t()
    return logits.softmax(dim=-1)[0], leaf, (int(feats.shape[-2]), int(feats.shape[-1]))


def softmax_gradcam(
    visual: nn.Module,
    pixels: Tensor,
    text: Tensor,
    targets: Sequence[int],
    *,
    logit_scale: float,
    attention_layers: int = 8,
    pos_embed_mode: str = "bilinear",
) -> GradCamOutput:
    """CLIP-ES softmax-GradCAM for one image.

    Args:
        visual: an open_clip image tower (plain ``VisionTransformer`` or ``ModifiedResNet``), in eval mode.
        pixels: ``[1, 3, H, W]`` normalized image; ``H, W`` multiples of the patch size (ViT) or 32.
        text: ``[N, D]`` text embeddings (normalized here): the image's classes, then background prompts.
        targets: rows of ``text`` to compute a CAM for (usually ``range(K)`` for the K image labels).
        logit_scale: multiplier of the cosine similarities (CLIP: ``model.logit_scale.exp()``, 100).
        attention_layers: ViT only: how many of the last blocks' attention maps to average (CLIP-ES: 8;
            all blocks if the model has fewer; 0 skips recording).
        pos_embed_mode: interpolation of the positional embedding to the input grid: "bilinear"
            (CLIP-ES, linyq2117/CLIP-ES@3893f81 ``clip/model.py``) or "bicubic" (ovdistill before
            the recipe audit; MaskCLIP's mode).

    Returns:
        :class:`GradCamOutput` with ``cams [K, h, w]`` on the feature grid.
    """
    kind = dense_kind(visual)
    if pixels.ndim != 4 or pixels.shape[:2] != (1, 3):
        raise ValueError(f"pixels must be [1, 3, H, W], got {tuple(pixels.shape)}")
    stride = dense_stride(visual)
    if pixels.shape[-2] % stride or pixels.shape[-1] % stride:
        raise ValueError(
            f"input size {tuple(pixels.shape[-2:])} must be a multiple of the stride {stride}"
        )
    if text.ndim != 2 or not targets or not all(0 <= int(t) < text.shape[0] for t in targets):
        raise ValueError(f"targets {list(targets)} must index the {text.shape[0]} text rows")
    if pos_embed_mode not in ("bilinear", "bicubic"):
        raise ValueError(f"pos_embed_mode must be 'bilinear' or 'bicubic', got {pos_embed_mode!r}")
    text = F.normalize(text.float(), dim=-1)
    attention = None
    with torch.enable_grad():
        if kind == "vit":
            layers = min(int(attention_layers), len(visual.transformer.resblocks))
            probs, leaf, attentions, grid = _vit_scores(
                visual, pixels, text, float(logit_scale), layers, pos_embed_mode
            )
            activations = leaf[0, 1:].detach().t().reshape(-1, *grid)  # [C, h, w]
            if attentions:
                attention = torch.stack([a[0, 1:, 1:] for a in attentions]).mean(dim=0).float()
        else:
            probs, leaf, grid = _resnet_scores(
                visual, pixels, text, float(logit_scale), pos_embed_mode
            )
            activations = leaf[0].detach()
        cams = []
        for i, target in enumerate(targets):
            (grad,) = torch.autograd.grad(
                probs[int(target)], leaf, retain_graph=i + 1 < len(targets)
            )
            grad = grad[0, 1:].t().reshape(-1, *grid) if kind == "vit" else grad[0]
            cams.append(gradcam_from_gradients(activations.float(), grad.float()))
    return GradCamOutput(
        cams=minmax_scale(torch.stack(cams)), probs=probs.detach(), attention=attention
    )
