"""CPU RoIAlign backward: torchvision's kernel vs the separable matmul backward of ``detectors.modeling.poolers``.

For each FPN level of the toy detector (8 images of 128 px, 64 channels, levels 1/4 .. 1/32) and the
RoIs Detectron2's level mapping assigns to it (96 toy-sized boxes per image, as sampled RoIs plus
distillation regions), times the gradient of the features through ``torchvision.ops.roi_align``
(its single-threaded CPU kernel) and :func:`separable_roi_align_backward` (same gradient, checked), in
alternation, and reports medians and their ratio. With ``--iteration CONFIG`` it also builds the
detector of ``CONFIG`` twice (``MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD`` False / True, same seed) and
times whole training iterations of the two in alternation. The JSON summary is the last line of stdout
(``benchmarks/README.md``):

    python benchmarks/roi_align_backward.py [--repeats 20] [--channels 64] [--images 8] \
        [--iteration toy/vild_text.yaml --iters 30]
    python benchmarks/roi_align_backward.py --quick    # 3 repeats (make bench)

Baseline: torchvision's backward; ``ratios``: ``speedup`` = torchvision / separable summed over the
levels (> 1: the separable backward is faster), per level in ``levels``; with ``--iteration``,
``iteration_speedup`` the same for the median training-iteration wall time (``iteration``).
"""

from __future__ import annotations

import statistics
import time

import torch
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage
from torchvision.ops import roi_align

from _cli import argument_parser, parse_args, report
from detectors.config import load_config
from detectors.engine import OVTrainer, seed_everything
from detectors.modeling.poolers import separable_roi_align_backward
from detectors.prepare import prepare_resources

SIDES = (32, 16, 8, 4)
"""FPN levels p2-p5 of the toy detector's 128 px inputs."""


def _toy_rois(num: int, images: int, *, generator: torch.Generator) -> list[torch.Tensor]:
    """Per level p2..p5, ``[K_l, 5]`` RoIs of toy-like boxes (8-120 px, aspect 1:2 to 2:1 on 128 px images),
    assigned to levels by Detectron2's ``assign_boxes_to_levels`` (canonical 224 px at p4), as the box
    pooler does."""
    side = 8 + torch.rand(num, generator=generator) * 112
    aspect = 2 ** (torch.rand(num, generator=generator) * 2 - 1)
    wh = torch.stack([side * aspect.sqrt(), side / aspect.sqrt()], dim=1).clamp(max=128)
    xy = torch.rand(num, 2, generator=generator) * (128 - wh)
    batch = torch.randint(0, images, (num,), generator=generator)
    rois = torch.cat([batch[:, None].float(), xy, xy + wh], dim=1)
    levels = assign_boxes_to_levels([Boxes(rois[:, 1:])], 2, 5, 224, 4)
    return [rois[levels == level] for level in range(len(SIDES))]


def run(*, repeats: int, channels: int, images: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    levels = []
    for side, rois in zip(SIDES, _toy_rois(96 * images, images, generator=generator)):
        if not len(rois):
            continue
        scale = side / 128
        num = len(rois)
        features = torch.randn(
            images, channels, side, side, generator=generator, requires_grad=True
        )
        out = roi_align(features, rois, (7, 7), scale, 0, True)
        grad = torch.randn(out.shape, generator=generator)
        reference = separable = None
        times = {"torchvision": [], "separable": []}
        for _ in range(repeats):
            start = time.perf_counter()
            (reference,) = torch.autograd.grad(out, features, grad, retain_graph=True)
            times["torchvision"].append(time.perf_counter() - start)
            start = time.perf_counter()
            separable = separable_roi_align_backward(
                grad,
                rois,
                tuple(features.shape),
                spatial_scale=scale,
                sampling_ratio=0,
                aligned=True,
            )
            times["separable"].append(time.perf_counter() - start)
        tv, sep = statistics.median(times["torchvision"]), statistics.median(times["separable"])
        levels.append(
            {
                "side": side,
                "rois": num,
                "torchvision_ms": round(tv * 1e3, 3),
                "separable_ms": round(sep * 1e3, 3),
                "speedup": round(tv / sep, 2),
                "max_abs_diff": float((reference - separable).abs().max()),
            }
        )
    total_tv = sum(level["torchvision_ms"] for level in levels)
    total_sep = sum(level["separable_ms"] for level in levels)
    return {
        "channels": channels,
        "images": images,
        "repeats": repeats,
        "levels": levels,
        "torchvision_ms": round(total_tv, 3),
        "separable_ms": round(total_sep, 3),
    }


def iteration_speedup(config: str, *, iters: int, warmup: int = 3) -> dict:
    """Median wall time of training iterations with Detectron2's pooler vs :class:`OVROIPooler`."""
    runs = {}
    for name, separable in (("torchvision", False), ("separable", True)):
        cfg = load_config(config, ["MODEL.ROI_BOX_HEAD.SEPARABLE_CPU_BACKWARD", separable])
        cfg = prepare_resources(cfg)
        seed_everything(max(cfg.SEED, 0))
        model = OVTrainer.build_model(cfg).train()
        runs[name] = (model, build_optimizer(cfg, model), iter(OVTrainer.build_train_loader(cfg)))
    wall: dict[str, list[float]] = {name: [] for name in runs}
    with EventStorage():
        for step in range(warmup + iters):
            for name, (model, optimizer, loader) in runs.items():
                start = time.perf_counter()
                losses = model(next(loader))
                optimizer.zero_grad()
                sum(losses.values()).backward()
                optimizer.step()
                if step >= warmup:
                    wall[name].append(time.perf_counter() - start)
    tv, sep = statistics.median(wall["torchvision"]), statistics.median(wall["separable"])
    return {
        "config": config,
        "iters": iters,
        "torchvision_s": round(tv, 4),
        "separable_s": round(sep, 4),
    }


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument(
        "--iteration",
        default="",
        metavar="CONFIG",
        help="also compare whole training iterations of this detector config",
    )
    parser.add_argument("--iters", type=int, default=30)
    args = parse_args(parser)
    repeats, images, iters = (3, 8, 3) if args.quick else (args.repeats, args.images, args.iters)
    measured = run(repeats=repeats, channels=args.channels, images=images)
    ratios = {"speedup": measured["torchvision_ms"] / measured["separable_ms"]}
    if args.iteration:
        iteration = measured["iteration"] = iteration_speedup(args.iteration, iters=iters)
        ratios["iteration_speedup"] = iteration["torchvision_s"] / iteration["separable_s"]
    report(
        "roi_align_backward",
        args,
        baseline="torchvision.ops.roi_align backward",
        ratios=ratios,
        **measured,
    )


if __name__ == "__main__":
    main()
