"""Region-embedding throughput of a small random-init CLIP teacher.

Compares, in one run: crop mode batched (one roi_align per image + batched encoder calls) vs a naive
per-box loop (slice, resize, encode one crop at a time), and dense (MaskCLIP + roi_embed) vs crop mode.
Prints a table, then the JSON summary on the last line (``benchmarks/README.md``). Baseline: the
naive loop; ``ratios`` (of boxes per second, > 1: faster): ``batched_vs_naive`` and
``dense_vs_crop`` (dense vs batched crops).

    python benchmarks/teacher_throughput.py [--device cuda] [--arch vit|resnet] [--images 4 --boxes 32]
    python benchmarks/teacher_throughput.py --quick    # 1 image, 8 boxes, best of 1 (make bench)
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _cli import argument_parser, parse_args, report
from distill.teachers import ClipTeacher

TEXT = {"width": 64, "heads": 2, "layers": 1, "context_length": 16, "vocab_size": 49408}
CONFIGS = {
    "vit": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 224,
            "layers": 4,
            "width": 128,
            "patch_size": 32,
            "head_width": 32,
        },
        "text_cfg": TEXT,
    },
    "resnet": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 16},
        "text_cfg": TEXT,
    },
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (the machine may be shared), and the last output."""
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


@torch.no_grad()
def naive_crop_embeddings(teacher: ClipTeacher, images, boxes, scales) -> list[torch.Tensor]:
    """The straightforward loop: per box and scale, slice the crop, resize it, encode it alone."""
    out = []
    for image, bx in zip(images, boxes):
        image = image.to(teacher.device)
        height, width = image.shape[1:]
        rows = []
        for box in bx.tolist():
            cx, cy, bw, bh = (
                (box[0] + box[2]) / 2,
                (box[1] + box[3]) / 2,
                box[2] - box[0],
                box[3] - box[1],
            )
            per_scale = []
            for s in scales:
                x1, x2 = max(0, int(cx - bw * s / 2)), min(width, int(round(cx + bw * s / 2)))
                y1, y2 = max(0, int(cy - bh * s / 2)), min(height, int(round(cy + bh * s / 2)))
                crop = image[:, y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)].float()[None]
                crop = F.interpolate(
                    crop, size=teacher.input_size, mode="bicubic", align_corners=False
                )
                per_scale.append(teacher._encode_pixels(crop.clamp(0, 255))[0])
            rows.append(F.normalize(torch.stack(per_scale).mean(0), dim=0))
        out.append(torch.stack(rows))
    return out


def make_inputs(n_images: int, n_boxes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, boxes = [], []
    for _ in range(n_images):
        h, w = 480, 640
        images.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        xy = torch.rand(n_boxes, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
        wh = 16 + torch.rand(n_boxes, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4])
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    return images, boxes


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", choices=sorted(CONFIGS), default="vit")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--boxes", type=int, default=16, help="boxes per image")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings per method")
    args = parse_args(parser)
    n_images, per_image, reps = (1, 8, 1) if args.quick else (args.images, args.boxes, args.repeats)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / f"bench-{args.arch}.json"
        config.write_text(json.dumps(CONFIGS[args.arch]))
        teacher = ClipTeacher(
            f"ovd-bench-{args.arch}",
            model_config=config,
            device=args.device,
            precision=args.precision,
            allow_random_init=True,
        )
    device = teacher.device
    images, boxes = make_inputs(n_images, per_image)
    scales = (1.0, 1.5)
    n_boxes = sum(len(b) for b in boxes)

    # warm-up (allocations at full batch size, kernels, lazy imports)
    teacher.region_embeddings(images[:1], [boxes[0]], scales=scales, batch_size=args.batch_size)
    teacher.region_embeddings(images[:1], [boxes[0][:2]], mode="dense")
    naive_crop_embeddings(teacher, images[:1], [boxes[0][:2]], scales)

    t_batched, batched = _timed(
        lambda: teacher.region_embeddings(images, boxes, scales=scales, batch_size=args.batch_size),
        device,
        reps,
    )
    t_naive, naive = _timed(
        lambda: naive_crop_embeddings(teacher, images, boxes, scales), device, reps
    )
    t_dense, dense = _timed(
        lambda: teacher.region_embeddings(images, boxes, mode="dense"), device, reps
    )
    agree_naive = float(torch.cat([(a * b).sum(1) for a, b in zip(batched, naive)]).mean())
    agree_dense = float(torch.cat([(a * b).sum(1) for a, b in zip(batched, dense)]).mean())

    rates = {
        "crop_batched": n_boxes / t_batched,
        "crop_naive": n_boxes / t_naive,
        "dense": n_boxes / t_dense,
    }
    print(
        f"teacher: {args.arch} ({teacher.input_size[0]}px, embed {teacher.embed_dim}, random init) on "
        f"{device} {args.precision}; {n_images} images 640x480, {n_boxes} boxes, scales {scales}"
    )
    print(f"{'method':<14}{'seconds':>10}{'boxes/s':>12}{'cos vs batched':>16}")
    for name, secs, agree in [
        ("crop_batched", t_batched, 1.0),
        ("crop_naive", t_naive, agree_naive),
        ("dense", t_dense, agree_dense),
    ]:
        print(f"{name:<14}{secs:>10.3f}{rates[name]:>12.1f}{agree:>16.3f}")
    ratios = {
        "batched_vs_naive": rates["crop_batched"] / rates["crop_naive"],
        "dense_vs_crop": rates["dense"] / rates["crop_batched"],
    }
    report(
        "teacher_throughput",
        args,
        baseline="naive per-box crop loop",
        ratios=ratios,
        arch=args.arch,
        device=str(device),
        precision=args.precision,
        images=n_images,
        boxes=n_boxes,
        scales=list(scales),
        batch_size=args.batch_size,
        boxes_per_s={k: round(v, 2) for k, v in rates.items()},
        mean_cos_naive_vs_batched=round(agree_naive, 4),
        mean_cos_dense_vs_crop=round(agree_dense, 4),
    )


if __name__ == "__main__":
    main()
