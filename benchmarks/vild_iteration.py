"""Cost of a ViLD training iteration relative to ViLD-text's, with cached teacher embeddings.

Builds the same student twice from one config (``MODEL.VILD.DISTILL.ENABLED`` False / True, same
seed), prepares the region cache (``detectors.prepare``), and times full training iterations
(data loading + mapping + forward + backward + SGD step), alternating the two models so that both
see the same machine load; medians of process CPU time (all threads) are compared, which other
processes' load disturbs far less than wall time (also reported). The JSON summary is the last line
of stdout (``benchmarks/README.md``):

    python benchmarks/vild_iteration.py [--config toy/vild.yaml] [--iters 60] [--warmup 3] [KEY VALUE ...]
    python benchmarks/vild_iteration.py --quick    # 16-image toy world in a temporary directory,
                                                   # 2 images per batch, 3 iterations (make bench)

Baseline: ViLD-text; ``ratios``: ``overhead`` = median ViLD iteration CPU time / median ViLD-text's,
minus 1 (target: <= 0.10); ``overhead_wall`` the same in wall-clock time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from _cli import argument_parser, parse_args, report
from detectors.config import load_config
from detectors.engine import OVTrainer, seed_everything
from detectors.prepare import prepare_resources

QUICK_OPTS = [
    "DATASETS.TOY.OVERRIDES",
    "['n_train=16','n_val=4','n_captions=256']",
    "MODEL.VILD.TEACHER.TOY_OVERRIDES",
    "['epochs=1','max_captions=256']",
    "MODEL.VILD.DISTILL.PROPOSAL_OPTS",
    "['SOLVER.MAX_ITER','2']",
    "SOLVER.IMS_PER_BATCH",
    "2",
]
"""A few-image toy world, a one-epoch teacher, a 2-iteration RPN and small batches."""


def _timed_steps(
    model, optimizer, loader_iter, count: int
) -> tuple[list[float], list[float], list[float]]:
    """Per step: wall seconds, process CPU seconds (all threads; robust to other processes' load) and
    wall seconds spent loading/mapping the batch."""
    wall, cpu, data = [], [], []
    for _ in range(count):
        start, start_cpu = time.perf_counter(), time.process_time()
        batch = next(loader_iter)
        loaded = time.perf_counter()
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        data.append(loaded - start)
    return wall, cpu, data


def run(
    config: str, opts: list[str], *, iters: int, warmup: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """(ratios to ViLD-text, measurements) of ``iters`` alternating training iterations."""
    cfgs = {}
    for variant, enabled in (("vild_text", False), ("vild", True)):
        cfg = load_config(config, [*opts, "MODEL.VILD.DISTILL.ENABLED", enabled])
        cfg = prepare_resources(cfg)
        cfgs[variant] = cfg
    runs = {}
    for variant, cfg in cfgs.items():
        seed_everything(max(cfg.SEED, 0))
        model = OVTrainer.build_model(cfg).train()
        runs[variant] = (
            model,
            build_optimizer(cfg, model),
            iter(OVTrainer.build_train_loader(cfg)),
        )
    wall: dict[str, list[float]] = {v: [] for v in runs}
    cpu: dict[str, list[float]] = {v: [] for v in runs}
    data: dict[str, list[float]] = {v: [] for v in runs}
    with EventStorage():
        for model, optimizer, loader in runs.values():
            _timed_steps(model, optimizer, loader, warmup)
        for _ in range(iters):
            for variant, (model, optimizer, loader) in runs.items():
                step_wall, step_cpu, load = _timed_steps(model, optimizer, loader, 1)
                wall[variant] += step_wall
                cpu[variant] += step_cpu
                data[variant] += load
    text, vild = statistics.median(cpu["vild_text"]), statistics.median(cpu["vild"])
    text_wall, vild_wall = statistics.median(wall["vild_text"]), statistics.median(wall["vild"])
    cfg = cfgs["vild"]
    ratios = {"overhead": vild / text - 1.0, "overhead_wall": vild_wall / text_wall - 1.0}
    return ratios, {
        "config": config,
        "iters": iters,
        "warmup": warmup,
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "distill_rois_per_image": cfg.MODEL.VILD.DISTILL.ROIS_PER_IMAGE,
        "device": cfg.MODEL.DEVICE,
        "vild_text_cpu_s": round(text, 4),
        "vild_cpu_s": round(vild, 4),
        "vild_text_wall_s": round(text_wall, 4),
        "vild_wall_s": round(vild_wall, 4),
        "data_vild_text_s": round(statistics.median(data["vild_text"]), 5),
        "data_vild_s": round(statistics.median(data["vild"]), 5),
    }


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--config", default="toy/vild.yaml")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parse_args(parser)
    opts, iters, warmup = list(args.opts), args.iters, args.warmup
    with tempfile.TemporaryDirectory(prefix="vild_bench_") as root:  # the quick run's toy world
        if args.quick:
            opts, iters, warmup = [*QUICK_OPTS, "DATASETS.TOY.ROOT", root, *opts], 3, 1
        ratios, measured = run(args.config, opts, iters=iters, warmup=warmup)
    report("vild_iteration", args, baseline="ViLD-text iteration", ratios=ratios, **measured)


if __name__ == "__main__":
    main()
