"""CLIP-ES pseudo-masks (+ confidence maps) for a dataset with image-level labels.

    # any dataset with an image-labels JSON (format: distill/cam/labels.py)
    python tools/make_pseudo_masks.py --labels labels.json --images IMG_DIR --out OUT \
        --model ViT-B-16 --pretrained openai [--device cuda] [--crf] [--gt GT_DIR]
    # PASCAL VOC (labels from the XML annotations; CLIP-ES prompts and background classes)
    python tools/make_pseudo_masks.py --voc-root VOCdevkit/VOC2012 --split-file .../train_aug.txt --out OUT \
        --model ViT-B-16 --pretrained openai --crf --device cuda
    # the embedded toy world and its toy teacher (built once and cached)
    python tools/make_pseudo_masks.py --toy --split train --out OUT [--no-caa] [--gt auto]

Writes ``OUT/{labels,masks,confidence}/<stem>.png``, ``OUT/classes.json`` and ``OUT/manifest.json``
(layout in ``distill/cam/masks.py``). ``masks/`` are MMSeg-ready seg maps: palette PNGs, 0 background,
255 where the confidence is below ``--confidence-threshold``. Reruns skip finished images (verified) and
refuse a directory made with other settings (``--overwrite`` recomputes). With ``--gt`` the pseudo-masks
are scored against ground-truth PNGs; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from distill.cam import (
    VOC_BACKGROUND_PROMPTS,
    ClipES,
    ClipESConfig,
    CrfParams,
    evaluate_pseudo_masks,
    load_image_labels,
    make_pseudo_masks,
    voc_image_labels,
)
from distill.teachers import ClipTeacher

# The toy teacher was trained on captions such as "a photo of a red star." / "an empty textured background.".
TOY_TEMPLATES = ("a photo of a {}.",)
TOY_BACKGROUND = ("empty background", "empty textured background", "plain background")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_argument_group("data (one of: --labels/--images, --voc-root/--split-file, --toy)")
    src.add_argument("--labels", help="image-labels JSON")
    src.add_argument("--images", help="image directory (file names from the labels JSON)")
    src.add_argument(
        "--voc-root",
        help="VOCdevkit/VOC2012: labels from Annotations/*.xml, images from JPEGImages",
    )
    src.add_argument("--split-file", help="VOC image-id list (with --voc-root)")
    src.add_argument(
        "--toy", action="store_true", help="the toy world + its ViT teacher (distill.toy)"
    )
    src.add_argument("--split", default="train", help="toy split (train/val)")
    src.add_argument("--toy-seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    t = p.add_argument_group("teacher")
    t.add_argument("--model", help="open_clip model name (e.g. ViT-B-16)")
    t.add_argument("--pretrained", help="open_clip tag or checkpoint path")
    t.add_argument("--model-config", help="open_clip model-config JSON for a custom architecture")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    c = p.add_argument_group("CLIP-ES")
    c.add_argument(
        "--templates",
        nargs="+",
        help="prompt templates (default: 'a clean origami {}.'; toy: 'a photo of a {}.')",
    )
    c.add_argument(
        "--background", nargs="*", help="background prompts (default: CLIP-ES VOC's 25; toy: 3)"
    )
    c.add_argument(
        "--no-caa",
        action="store_true",
        help="plain softmax-GradCAM, no class-aware attention refinement",
    )
    c.add_argument(
        "--scale", type=float, default=1.0, help="input resize factor (rounded up to the stride)"
    )
    c.add_argument("--box-threshold", type=float, default=0.4)
    c.add_argument("--attention-layers", type=int, default=8)
    c.add_argument("--bg-power", type=float, default=1.0)
    c.add_argument("--crf", action="store_true", help="DenseCRF refinement (needs pydensecrf2)")
    c.add_argument("--crf-iters", type=int, default=10)
    c.add_argument(
        "--crf-input",
        choices=("official_wrapped", "rgb"),
        default="official_wrapped",
        help="image of the CRF bilateral term: CLIP-ES's mean-subtracted BGR wrapped to uint8, "
        "or plain RGB",
    )
    c.add_argument(
        "--pos-embed-mode",
        choices=("bilinear", "bicubic"),
        default="bilinear",
        help="positional-embedding interpolation (CLIP-ES: bilinear)",
    )
    c.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.95,
        help="pixels below it are 255 in masks/ (CLIP-ES: 0.95 with CRF)",
    )
    p.add_argument(
        "--gt", help="ground-truth label PNG directory to score against ('auto' for --toy)"
    )
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--overwrite", action="store_true", help="recompute everything")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def resolve_data(args: argparse.Namespace, out: Path) -> tuple[Path, Path, Path | None, dict]:
    """``(labels JSON, image dir, ground-truth dir or None, teacher kwargs)`` from the arguments."""
    chosen = [bool(args.labels or args.images), bool(args.voc_root or args.split_file), args.toy]
    if sum(chosen) != 1:
        raise SystemExit(
            "give exactly one data source: --labels/--images, --voc-root/--split-file or --toy"
        )
    teacher = {
        "model_name": args.model,
        "pretrained": args.pretrained,
        "model_config": args.model_config,
    }
    gt = Path(args.gt) if args.gt and args.gt != "auto" else None
    if args.toy:
        from distill.toy import ensure_toy_teacher, ensure_toy_world

        world = ensure_toy_world(seed=args.toy_seed)
        if args.model is None:
            files = ensure_toy_teacher(world, arch="vit")
            teacher = {
                "model_name": files.model_name,
                "pretrained": str(files.checkpoint),
                "model_config": str(files.model_config),
            }
        gt = world.seg_dir(args.split) if args.gt == "auto" else gt
        return world.image_labels_json(args.split), world.image_dir(args.split), gt, teacher
    if args.gt == "auto":
        raise SystemExit("--gt auto only works with --toy")
    if args.voc_root:
        if not args.split_file:
            raise SystemExit("--voc-root needs --split-file")
        labels = voc_image_labels(args.voc_root, args.split_file, out / "image_labels.json")
        return labels, Path(args.voc_root) / "JPEGImages", gt, teacher
    if not (args.labels and args.images):
        raise SystemExit("--labels and --images go together")
    return Path(args.labels), Path(args.images), gt, teacher


def build_config(args: argparse.Namespace) -> ClipESConfig:
    templates = args.templates or (TOY_TEMPLATES if args.toy else ClipESConfig.templates)
    background = (
        args.background
        if args.background is not None
        else (TOY_BACKGROUND if args.toy else VOC_BACKGROUND_PROMPTS)
    )
    return ClipESConfig(
        templates=tuple(templates),
        background=tuple(background),
        scale=args.scale,
        refine=not args.no_caa,
        attention_layers=args.attention_layers,
        box_threshold=args.box_threshold,
        bg_power=args.bg_power,
        crf=args.crf,
        crf_params=CrfParams(iters=args.crf_iters),
        crf_input=args.crf_input,
        pos_embed_mode=args.pos_embed_mode,
        confidence_threshold=args.confidence_threshold,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    labels_path, image_dir, gt_dir, teacher_kwargs = resolve_data(args, out)
    if not teacher_kwargs["model_name"] or not teacher_kwargs["pretrained"]:
        raise SystemExit("--model and --pretrained are required (except with --toy)")
    labels = load_image_labels(labels_path)
    start = time.perf_counter()
    teacher = ClipTeacher(
        teacher_kwargs["model_name"],
        pretrained=teacher_kwargs["pretrained"],
        model_config=teacher_kwargs["model_config"],
        device=args.device,
    )
    generator = ClipES(teacher, list(labels.prompts), config=build_config(args))
    summary = make_pseudo_masks(
        generator,
        labels,
        image_dir,
        out,
        class_names=list(labels.names),
        limit=args.limit,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    result = {k: summary[k] for k in ("images", "computed", "skipped")}
    result.update(
        out_dir=str(out),
        seconds=round(time.perf_counter() - start, 1),
        caa=not args.no_caa,
        crf=args.crf,
    )
    if gt_dir is not None:
        files = [Path(e.file_name).stem + ".png" for e in labels.images[: args.limit]]
        metrics = evaluate_pseudo_masks(
            out,
            gt_dir,
            num_classes=len(labels.names) + 1,
            files=files,
            class_names=["background", *labels.names],
        )
        result.update({k: round(metrics[k], 2) for k in ("miou", "kept_miou", "coverage")})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
