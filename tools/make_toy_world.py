#!/usr/bin/env python
"""Build the toy open-vocabulary world and its tiny CLIP teacher, then print the teacher's zero-shot table.

    python tools/make_toy_world.py [--seed 0] [--out DIR] [--force] [--arch vit|resnet]

Without ``--out`` both go to ovdistill's cache (``$OVDISTILL_CACHE/toy``), where every other tool finds
them; with ``--out DIR`` they go to ``DIR/world`` and ``DIR/teacher-<arch>``. Already complete builds are
reused (checksum-verified) unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distill.toy import ensure_toy_teacher, ensure_toy_world
from distill.toy.zeroshot import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: the ovdistill cache)"
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a complete build exists"
    )
    parser.add_argument(
        "--arch",
        choices=("resnet", "vit"),
        default="resnet",
        help="teacher image tower (vit also builds the resnet whose text tower it reuses)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the teacher's training epochs"
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the full metrics as JSON (last line)"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    world = ensure_toy_world(
        seed=args.seed, root=None if args.out is None else args.out / "world", force=args.force
    )
    world_s = time.perf_counter() - start
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    start = time.perf_counter()
    teacher = ensure_toy_teacher(
        world,
        arch=args.arch,
        force=args.force,
        root=None if args.out is None else args.out / f"teacher-{args.arch}",
        **overrides,
    )
    teacher_s = time.perf_counter() - start
    info = teacher.info
    print(
        f"world:   {world.root}  ({world.config.n_train} train / {world.config.n_val} val images, "
        f"{world.config.n_captions} captions; {world_s:.1f} s)"
    )
    print(
        f"teacher: {teacher.root}  (model {teacher.model_name}, {info['train']['parameters'] / 1e6:.2f}M params, "
        f"trained in {info['train']['train_seconds']:.0f} s; this call {teacher_s:.1f} s)"
    )
    print(
        f"load with: ClipTeacher({teacher.model_name!r}, pretrained={str(teacher.checkpoint)!r}, "
        f"model_config={str(teacher.model_config)!r})"
    )
    if "metrics" in info:
        print(format_table(info["metrics"]))
        if args.json:
            print(
                json.dumps(
                    {
                        "world_seconds": round(world_s, 1),
                        "teacher_seconds": round(teacher_s, 1),
                        **info["metrics"],
                    }
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
