"""Evaluate an ovdistill MMSegmentation model with mmengine's Runner.

    python tools/test_seg.py CONFIG [CHECKPOINT] [--work-dir DIR] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm]

CHECKPOINT is optional for training-free models (MaskCLIP). The config is prepared as in
``tools/train_seg.py`` (placeholders, toy world, text-embedding files), and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set so that mmengine 0.10.7 checkpoints load under torch >= 2.6.
The metrics (``mIoU``, ``mIoU_seen``, ``mIoU_unseen``, ``hIoU``) are printed as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

os.environ.setdefault(
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1"
)  # before torch/mmengine load anything

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from segmentors.runner import prepare_config  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="mmengine config file")
    parser.add_argument(
        "checkpoint", nargs="?", default=None, help="checkpoint (omit for training-free models)"
    )
    parser.add_argument("--work-dir", help="directory for logs and text-embedding files")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="override config entries, e.g. test_dataloader.batch_size=4",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.resume = False
    return prepare_config(cfg, config_path=args.config, work_dir=args.work_dir)


def main(argv: Sequence[str] | None = None) -> dict:
    runner = Runner.from_cfg(build_config(parse_args(argv)))
    metrics = runner.test()
    print(json.dumps({k: float(v) for k, v in metrics.items()}))
    return metrics


if __name__ == "__main__":
    main()
