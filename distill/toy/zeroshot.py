"""Zero-shot quality of a toy teacher: crop classification and MaskCLIP-style dense segmentation.

Both use only the open_clip model (no ovdistill teacher wrapper), so they measure the weights themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import decode_image, image_path
from ..teachers.maskclip import dense_kind, resnet_dense_forward, vit_dense_forward
from ..vocab import dense_cosine_logits
from .teacher import normalize_images
from .world import ToyWorld, _crop_square

BACKGROUND_PROMPT = "a photo of an empty background."
RESNET_DENSE_STRIDE = (
    16  # toy images are 128 px: the plain stride-32 grid (4x4) is too coarse to segment
)


@torch.no_grad()
def text_classifier(
    model: torch.nn.Module,
    tokenizer: Callable,
    names: Sequence[str],
    *,
    template: str = "a photo of a {}.",
) -> torch.Tensor:
    """Normalized text embeddings [C, D] of ``template.format(name)`` for each name."""
    return F.normalize(
        model.encode_text(tokenizer([template.format(n) for n in names])).float(), dim=-1
    )


def val_crops(
    world: ToyWorld, *, split: str = "val", size: int, scale: float = 1.3, square: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of every GT box: uint8 [N, 3, size, size] and category ids [N].

    ``square``: a square of side ``scale * max(w, h)`` around the box (aspect kept); otherwise the box
    enlarged ``scale``x and resized to a square (aspect distorted, the ViLD way).
    """
    coco = json.loads(world.instances_json(split).read_text(encoding="utf-8"))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    crops, labels = [], []
    for info in coco["images"]:
        anns = by_image.get(info["id"], [])
        if not anns:
            continue
        image = decode_image(image_path(info, world.image_dir(split)), image_id=info["id"])
        h, w = image.shape[:2]
        for ann in anns:
            x, y, bw, bh = ann["bbox"]
            box = (int(x), int(y), int(x + bw), int(y + bh))
            if square:
                crop = _crop_square(image, box, scale=scale, jitter=np.zeros(2), out_size=size)
            else:
                cx, cy = x + bw / 2, y + bh / 2
                x1, x2 = max(0.0, cx - scale * bw / 2), min(float(w), cx + scale * bw / 2)
                y1, y2 = max(0.0, cy - scale * bh / 2), min(float(h), cy + scale * bh / 2)
                crop = np.asarray(
                    Image.fromarray(image).resize(
                        (size, size), Image.BILINEAR, box=(x1, y1, x2, y2)
                    )
                )
            crops.append(crop)
            labels.append(ann["category_id"])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def _image_size(model: torch.nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@torch.no_grad()
def crop_zero_shot(
    model: torch.nn.Module,
    tokenizer: Callable,
    world: ToyWorld,
    *,
    split: str = "val",
    scales: Sequence[float] = (1.3,),
    square: bool = True,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Top-1 accuracy of classifying GT-box crops among all 12 names ("a photo of a {}.").

    With several ``scales`` the normalized crop embeddings are averaged (ViLD: 1.0x and 1.5x boxes).
    Returns fractions in [0, 1]: ``base_top1``, ``novel_top1``, ``all_top1``, ``per_class`` and counts.
    """
    model.eval()
    embeddings, labels = [], None
    for scale in scales:
        crops, labels = val_crops(
            world, split=split, size=_image_size(model), scale=scale, square=square
        )
        embeddings.append(
            torch.cat(
                [
                    F.normalize(
                        model.encode_image(
                            normalize_images(crops[i : i + batch_size], model)
                        ).float(),
                        dim=-1,
                    )
                    for i in range(0, len(crops), batch_size)
                ]
            )
        )
    features = F.normalize(torch.stack(embeddings).mean(0), dim=-1)
    ids = torch.tensor([c["id"] for c in world.categories])
    pred = ids[(features @ text_classifier(model, tokenizer, world.class_names).T).argmax(1)]
    correct = pred == labels
    novel_ids = {c["id"] for c in world.categories if c["split"] == "novel"}
    is_novel = torch.tensor([int(label) in novel_ids for label in labels])
    per_class = {
        c["name"]: float(correct[labels == c["id"]].float().mean())
        if (labels == c["id"]).any()
        else None
        for c in world.categories
    }
    return {
        "base_top1": float(correct[~is_novel].float().mean()),
        "novel_top1": float(correct[is_novel].float().mean()),
        "all_top1": float(correct.float().mean()),
        "per_class": per_class,
        "n_base": int((~is_novel).sum()),
        "n_novel": int(is_novel.sum()),
    }


@torch.no_grad()
def dense_features(
    model: torch.nn.Module, images: torch.Tensor, *, output_stride: int | None = None
) -> torch.Tensor:
    """Un-normalized MaskCLIP dense embeddings [B, D, h, w] of uint8 images [B, 3, H, W] (any size).

    The same dense passes as ``ClipTeacher`` (``distill.teachers.maskclip``); ``output_stride`` (ResNet only:
    32, 16 or 8) as ``ClipTeacher(dense_output_stride=...)``.
    """
    pixels = normalize_images(images, model)
    if dense_kind(model.visual) == "resnet":
        return resnet_dense_forward(
            model.visual, pixels, output_stride=output_stride or 32
        ).features
    if output_stride is not None:
        raise ValueError("output_stride applies to ResNet teachers only")
    return vit_dense_forward(model.visual, pixels).features


@torch.no_grad()
def dense_zero_shot(
    model: torch.nn.Module,
    tokenizer: Callable,
    world: ToyWorld,
    *,
    split: str = "val",
    input_size: int | None = None,
    output_stride: int | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Zero-shot semantic segmentation mIoU on ``seg/<split>`` (fractions in [0, 1]).

    Per-patch cosine against [background prompt] + the 12 class prompts, bilinear upsampling, argmax.
    ``input_size``: resize images to this before the model (default: native resolution, positional
    embeddings interpolated). ``output_stride``: ResNet dense stride (default ``RESNET_DENSE_STRIDE``; ignored
    for a ViT, whose stride is its patch size). ``miou`` covers background + 12 classes; ``seen_miou``/``unseen_miou``
    cover base/novel classes.
    """
    model.eval()
    if dense_kind(model.visual) == "resnet":
        output_stride = output_stride or RESNET_DENSE_STRIDE
    else:
        output_stride = None
    names = world.class_names
    classifier = torch.cat(
        [
            text_classifier(model, tokenizer, [BACKGROUND_PROMPT], template="{}"),
            text_classifier(model, tokenizer, names),
        ]
    )
    coco = json.loads(world.instances_json(split).read_text(encoding="utf-8"))
    entries = coco["images"]
    k = len(names) + 1
    confusion = torch.zeros(k, k, dtype=torch.long)
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        pixels = [
            decode_image(image_path(info, world.image_dir(split)), image_id=info["id"])
            for info in chunk
        ]
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
        masks = [np.asarray(Image.open(image_path(info, world.seg_dir(split)))) for info in chunk]
        gts = torch.from_numpy(np.stack(masks)).long()
        inputs = (
            images
            if input_size is None
            else F.interpolate(
                images.float(), size=(input_size, input_size), mode="bilinear", align_corners=False
            )
        )
        feats = F.normalize(dense_features(model, inputs, output_stride=output_stride), dim=1)
        logits = dense_cosine_logits(feats, classifier, temperature=1.0)
        logits = F.interpolate(logits, size=gts.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        valid = gts != 255
        confusion += torch.bincount(gts[valid] * k + pred[valid], minlength=k * k).reshape(k, k)
    inter = confusion.diag().float()
    union = confusion.sum(0).float() + confusion.sum(1).float() - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
    novel = [i + 1 for i, c in enumerate(world.categories) if c["split"] == "novel"]
    base = [i + 1 for i, c in enumerate(world.categories) if c["split"] == "base"]
    return {
        "miou": float(np.nanmean(iou.numpy())),
        "seen_miou": float(np.nanmean(iou[base].numpy())),
        "unseen_miou": float(np.nanmean(iou[novel].numpy())),
        "background_iou": float(iou[0]),
        "pixel_accuracy": float(inter.sum() / confusion.sum().clamp(min=1)),
        "per_class": {name: float(iou[i]) for i, name in enumerate(["background"] + names)},
    }


def evaluate_toy_teacher(
    model: torch.nn.Module, tokenizer: Callable, world: ToyWorld
) -> dict[str, Any]:
    """The teacher's zero-shot table on val: crop top-1 (square 1.3x context; ViLD-style boxes at 1.0x, and
    1.0x + 1.5x averaged) and dense MaskCLIP mIoU."""
    return {
        "crop": crop_zero_shot(model, tokenizer, world),
        "crop_box_1.0": crop_zero_shot(model, tokenizer, world, scales=(1.0,), square=False),
        "crop_vild": crop_zero_shot(model, tokenizer, world, scales=(1.0, 1.5), square=False),
        "dense": dense_zero_shot(model, tokenizer, world),
    }


def format_table(metrics: dict[str, Any]) -> str:
    """A small text table of :func:`evaluate_toy_teacher`'s output (percent)."""
    rows = [f"{'zero-shot (val)':<40}{'base':>7}{'novel':>7}{'all':>7}"]
    for key, label in (
        ("crop", "crop top-1, square 1.3x context"),
        ("crop_box_1.0", "crop top-1, box 1.0x"),
        ("crop_vild", "crop top-1, boxes 1.0x+1.5x (ViLD)"),
    ):
        if key in metrics:
            m = metrics[key]
            rows.append(
                f"{label:<40}{100 * m['base_top1']:>7.1f}{100 * m['novel_top1']:>7.1f}"
                f"{100 * m['all_top1']:>7.1f}"
            )
    if "dense" in metrics:
        d = metrics["dense"]
        rows.append(
            f"{'dense MaskCLIP mIoU (seen/unseen/+bg)':<40}{100 * d['seen_miou']:>7.1f}"
            f"{100 * d['unseen_miou']:>7.1f}{100 * d['miou']:>7.1f}"
        )
    return "\n".join(rows)


__all__ = [
    "BACKGROUND_PROMPT",
    "RESNET_DENSE_STRIDE",
    "text_classifier",
    "val_crops",
    "crop_zero_shot",
    "dense_features",
    "dense_zero_shot",
    "evaluate_toy_teacher",
    "format_table",
]
