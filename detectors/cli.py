"""``tools/train_net.py``'s logic: Detectron2-style training / evaluation of ovdistill detectors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from distill.utils import atomic_path

from .config import load_config, resolve_config_file
from .engine import OVTrainer, seed_everything
from .prepare import prepare_resources

__all__ = ["argument_parser", "setup", "build_trainer", "main", "run"]

logger = logging.getLogger("detectors")

EPILOG = """
Examples:
  tools/train_net.py --config toy/vild.yaml                     # configs/toy/vild.yaml, CPU
  tools/train_net.py --config vild_r50.yaml --num-gpus 8
  tools/train_net.py --config toy/vild.yaml --eval-only         # last checkpoint of OUTPUT_DIR
  tools/train_net.py --config toy/vild.yaml --resume SOLVER.MAX_ITER 600
Config names resolve relative to configs/. Missing text classifiers, proposals and region caches
are computed first (see detectors/prepare.py) and cached.
"""


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--config`` as an alias of ``--config-file``."""
    parser = default_argument_parser(epilog=EPILOG)
    parser.add_argument(
        "--config",
        dest="config_file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="alias of --config-file; names resolve relative to configs/",
    )
    return parser


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from ``args`` (file + KEY VALUE opts), logged and saved by Detectron2's ``default_setup``,
    then the resources it needs prepared; the resolved config overwrites ``OUTPUT_DIR/config.yaml``."""
    if not args.config_file:
        raise SystemExit("--config (or --config-file) is required")
    args.config_file = str(resolve_config_file(args.config_file))
    cfg = load_config(args.config_file, args.opts or [])
    default_setup(cfg, args)
    for name, abbrev in (("detectors", "ovd"), ("distill", "distill")):
        setup_logger(
            cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name, abbrev_name=abbrev
        )
    cfg = prepare_resources(cfg)
    cfg.freeze()
    if comm.is_main_process():
        path = Path(cfg.OUTPUT_DIR) / "config.yaml"
        with atomic_path(path) as tmp:
            tmp.write_text(cfg.dump(), encoding="utf-8")
        logger.info("resolved config saved to %s", path)
    return cfg


def build_trainer(cfg: CfgNode) -> OVTrainer:
    """An ``OVTrainer`` built right after seeding with ``SEED``: the same initial weights whether or not
    the resource preparation consumed randomness (a first run vs. a resumed one)."""
    seed_everything(max(cfg.SEED, 0))
    return OVTrainer(cfg)


def main(args: argparse.Namespace) -> Any:
    """Train (optionally resuming) or evaluate; returns the evaluation results."""
    cfg = setup(args)
    if args.eval_only:
        model = OVTrainer.build_model(cfg)
        weights = cfg.MODEL.WEIGHTS
        checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        if not weights and not checkpointer.has_checkpoint():
            raise FileNotFoundError(
                f"--eval-only: MODEL.WEIGHTS is empty and {cfg.OUTPUT_DIR} has no checkpoint"
            )
        checkpointer.resume_or_load(weights, resume=args.resume or not weights)
        return OVTrainer.test(cfg, model)
    trainer = build_trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def run(argv: Sequence[str] | None = None) -> Any:
    """Parse ``argv`` and ``launch`` :func:`main` on ``--num-gpus`` x ``--num-machines`` processes."""
    args = argument_parser().parse_args(argv)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
