"""Cost of a ViLD training iteration relative to ViLD-text's, with cached teacher embeddings.

Builds the same student twice from one config (``MODEL.VILD.DISTILL.ENABLED`` False / True, same
seed), prepares the region cache (``detectors.prepare``), and times full training iterations
(data loading + mapping + forward + backward + SGD step), alternating the two models so that both
see the same machine load; medians of process CPU time (all threads) are compared, which other
processes' load disturbs far less than wall time (also reported). The JSON summary is the last line
of stdout:

    python benchmarks/vild_iteration.py [--config toy/vild.yaml] [--iters 60] [--warmup 3] [KEY VALUE ...]
    python benchmarks/vild_iteration.py --tiny          # a few-image toy world (CI smoke run)

``overhead`` = median ViLD iteration CPU time / median ViLD-text's - 1 (target: <= 0.10);
``overhead_wall`` the same in wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch

from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from detectors.engine import OVTrainer, seed_everything
from detectors.prepare import load_config, prepare_resources

TINY_OPTS = [
    "DATASETS.TOY.OVERRIDES", "['n_train=16','n_val=4','n_captions=256']",
    "MODEL.VILD.TEACHER.TOY_OVERRIDES", "['epochs=1','max_captions=256']",
    "MODEL.VILD.DISTILL.PROPOSAL_OPTS", "['SOLVER.MAX_ITER','2']",
]


def _timed_steps(model, optimizer, loader_iter, count: int) -> tuple[list[float], list[float], list[float]]:
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


def run(config: str, opts: list[str], *, iters: int, warmup: int) -> dict[str, Any]:
    cfgs = {}
    for variant, enabled in (("vild_text", False), ("vild", True)):
        cfg = load_config(config, [*opts, "MODEL.VILD.DISTILL.ENABLED", enabled])
        prepare_resources(cfg)
        cfgs[variant] = cfg
    runs = {}
    for variant, cfg in cfgs.items():
        seed_everything(max(cfg.SEED, 0))
        model = OVTrainer.build_model(cfg).train()
        runs[variant] = (model, build_optimizer(cfg, model), iter(OVTrainer.build_train_loader(cfg)))
    wall: dict[str, list[float]] = {v: [] for v in runs}
    cpu: dict[str, list[float]] = {v: [] for v in runs}
    data: dict[str, list[float]] = {v: [] for v in runs}
    with EventStorage():
        for variant, (model, optimizer, loader) in runs.items():
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
    return {
        "benchmark": "vild_iteration", "config": config, "iters": iters, "warmup": warmup,
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH, "distill_rois_per_image": cfg.MODEL.VILD.DISTILL.ROIS_PER_IMAGE,
        "threads": torch.get_num_threads(), "device": cfg.MODEL.DEVICE,
        "vild_text_cpu_s": round(text, 4), "vild_cpu_s": round(vild, 4), "overhead": round(vild / text - 1.0, 4),
        "vild_text_wall_s": round(text_wall, 4), "vild_wall_s": round(vild_wall, 4),
        "overhead_wall": round(vild_wall / text_wall - 1.0, 4),
        "data_vild_text_s": round(statistics.median(data["vild_text"]), 5),
        "data_vild_s": round(statistics.median(data["vild"]), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="toy/vild.yaml")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="few-image toy world in a temporary directory")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    opts = list(args.opts)
    if args.tiny:
        root = tempfile.mkdtemp(prefix="vild_bench_")
        opts = [*TINY_OPTS, "DATASETS.TOY.ROOT", root, *opts]
    result = run(args.config, opts, iters=args.iters, warmup=args.warmup)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
