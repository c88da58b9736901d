"""Train an ovdistill MMSegmentation model (MaskCLIP+, LSeg, ...) with mmengine's Runner.

    python tools/train_seg.py configs/seg/toy/maskclip_plus.py [--work-dir DIR] [--resume]
        [--cfg-options key=value ...] [--amp] [--launcher none|pytorch|slurm]
    torchrun --nproc_per_node 8 tools/train_seg.py CONFIG --launcher pytorch

Before the Runner is built, ``segmentors.runner.prepare_config`` fills the config's placeholders
(``<work_dir>``; with ``toy_world=True`` the toy world root and toy teacher files from
``distill.toy.ensure_toy_world()`` / ``ensure_toy_teacher()``) and writes missing or stale
text-embedding files with the config's teacher.

``--resume`` continues from the latest checkpoint in the work dir. mmengine 0.10.7 checkpoints need
full unpickling, which torch >= 2.6 disables by default; this tool sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's own switch) before anything is loaded. Only resume from
checkpoints you trust.
"""

from __future__ import annotations

import argparse
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
        "--work-dir", help="directory for logs, checkpoints and text-embedding files"
    )
    parser.add_argument(
        "--resume", action="store_true", help="resume from the latest checkpoint in the work dir"
    )
    parser.add_argument(
        "--amp", action="store_true", help="automatic mixed precision (AmpOptimWrapper)"
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="override config entries, e.g. train_cfg.max_iters=100",
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
    if args.resume:
        cfg.resume = True
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    return prepare_config(cfg, config_path=args.config, work_dir=args.work_dir)


def main(argv: Sequence[str] | None = None) -> None:
    runner = Runner.from_cfg(build_config(parse_args(argv)))
    runner.train()


if __name__ == "__main__":
    main()
