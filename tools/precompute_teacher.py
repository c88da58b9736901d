"""Precompute teacher region embeddings for ViLD-style distillation into an EmbeddingStore.

Single process:
    python tools/precompute_teacher.py --dataset-json train.json --image-root images/ --out cache/ \
        --proposals proposals.pkl --model-name ViT-B-32 --pretrained openai --device cuda
Several GPUs (shards are split across ranks; rerunning resumes):
    torchrun --nproc_per_node 8 tools/precompute_teacher.py ... --device cuda
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import timedelta

import torch

from distill.cache import EmbeddingStore, precompute_region_embeddings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-json", required=True, help="COCO/LVIS-format annotation json")
    parser.add_argument("--image-root", required=True, help="directory of the image files")
    parser.add_argument(
        "--out", required=True, help="store directory (created; resumed if it exists)"
    )
    parser.add_argument(
        "--proposals", default=None, help="Detectron2-format proposal file (.pkl/.json)"
    )
    parser.add_argument(
        "--source",
        choices=("gt", "proposals"),
        default=None,
        help="regions: ground-truth boxes or proposals (default: proposals iff --proposals)",
    )
    parser.add_argument("--max-per-image", type=int, default=300)
    parser.add_argument(
        "--mode", default="crop", help="teacher region-embedding mode (crop | dense)"
    )
    parser.add_argument(
        "--scales", type=float, nargs="+", default=[1.0, 1.5], help="crop scales, averaged"
    )
    parser.add_argument("--images-per-shard", type=int, default=256)
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument("--teacher", default="clip", help="name in distill.teachers.TEACHERS")
    parser.add_argument("--model-name", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or local checkpoint path")
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="allow a randomly initialized teacher without --pretrained (tests/benchmarks only)",
    )
    parser.add_argument(
        "--model-config", default=None, help="open_clip model-config JSON for custom archs"
    )
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--verify", action="store_true", help="reopen the store and check every sha256"
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _init_distributed(device: str) -> tuple[str, bool]:
    """Initialize torch.distributed under torchrun (RANK/WORLD_SIZE set); returns (device, initialized)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    on_gpu = device.startswith("cuda")
    if on_gpu:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    # Ranks may finish at very different times (uneven shards), so allow a long final barrier.
    torch.distributed.init_process_group(
        backend="nccl" if on_gpu else "gloo", timeout=timedelta(hours=12)
    )
    return device, True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    device, distributed = _init_distributed(args.device)
    from distill.teachers import (
        build_teacher,
    )  # imported late: only this CLI needs a concrete teacher

    teacher = build_teacher(
        args.teacher,
        model_name=args.model_name,
        pretrained=args.pretrained,
        model_config=args.model_config,
        device=device,
        precision=args.precision,
        allow_random_init=args.random_init,
    )
    try:
        out = precompute_region_embeddings(
            teacher,
            args.dataset_json,
            args.image_root,
            args.out,
            proposals=args.proposals,
            source=args.source,
            max_per_image=args.max_per_image,
            mode=args.mode,
            scales=tuple(args.scales),
            images_per_shard=args.images_per_shard,
            batch_images=args.batch_images,
            progress=not args.no_progress,
        )
        if not distributed or torch.distributed.get_rank() == 0:
            store = EmbeddingStore.open(out, verify=args.verify)
            logging.getLogger("precompute_teacher").info("%r, %d regions", store, store.num_regions)
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
