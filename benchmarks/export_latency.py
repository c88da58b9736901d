"""CPU latency of one ViLD detector: eager Detectron2 vs TorchScript vs ONNX Runtime, in the same run.

The toy architecture (``configs/toy/vild.yaml``: half-width ResNet-18-FPN, 128 px) is built with random
weights on a generated few-image dataset (latency does not depend on training), or loaded from
``--weights``. It is exported with the vocabulary as an input (``detectors.export``) and the three
back-ends run on the same images and vocabulary (K classes), interleaved so that they see the same
machine load; each timing is one image, single-threaded by default (``--threads``). The JSON summary
is the last line of stdout (``benchmarks/README.md``); baseline: eager; ``ratios``:
``torchscript_vs_eager`` / ``onnxruntime_vs_eager`` = median latency / eager median (< 1: faster).

    python benchmarks/export_latency.py [--config toy/vild.yaml] [--weights W] [--iters 30] [--classes 12]
    python benchmarks/export_latency.py --quick        # 10 iterations, 1 warm-up (make bench)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.modeling import build_model
from torch.nn import functional as F

from _cli import argument_parser, parse_args, report
from detectors.config import load_config
from detectors.data import register_ov_dataset, resolve_training_classes
from detectors.export import ExportedDetector, example_size, export_detector
from detectors.predictor import load_checkpoint, load_inference_config
from detectors.testing import write_random_text_embeddings, write_tiny_dataset


def build(config: str, weights: str | None, root: Path, opts: list[str]) -> tuple[Any, Any]:
    """(cfg, eager model): trained weights, or random init on a generated 128-px dataset."""
    if weights:
        cfg = load_inference_config(config, weights=weights, opts=opts)
        model = build_model(cfg).eval()
        load_checkpoint(model, weights, text_embeddings=cfg.MODEL.VILD.TEXT_EMBEDDINGS)
        return cfg, model
    cfg = load_config(config, opts)
    size = int(cfg.INPUT.MAX_SIZE_TEST)
    json_path, image_root = write_tiny_dataset(root / "data", num_images=4, size=size)
    register_ov_dataset("export_latency_bench", json_path, image_root)
    text = write_random_text_embeddings(
        root / "text.pt", ["red box", "green box", "blue box"], dim=128
    )
    cfg.merge_from_list(
        [
            "DATASETS.TRAIN",
            ("export_latency_bench",),
            "DATASETS.TEST",
            ("export_latency_bench",),
            "MODEL.VILD.TEXT_EMBEDDINGS",
            str(text),
            "MODEL.VILD.DISTILL.ENABLED",
            False,
            "MODEL.DEVICE",
            "cpu",
        ]
    )
    cfg = resolve_training_classes(cfg)
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def _time(fn: Callable[[torch.Tensor], Any], image: torch.Tensor) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn(image)``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn(image)
    return time.perf_counter() - start, time.process_time() - start_cpu


def run(
    config: str,
    weights: str | None,
    opts: list[str],
    *,
    iters: int,
    warmup: int,
    classes: int,
    threads: int,
    root: Path,
) -> tuple[dict[str, float], dict[str, Any]]:
    """(ratios to eager, measurements) of the three back-ends on ``threads`` threads; the dataset
    and the exported files are written under ``root``."""
    cfg, model = build(config, weights, root, opts)
    size = example_size(cfg)
    embed_dim = int(model.roi_heads.box_predictor.projection.out_features)
    embeddings = F.normalize(
        torch.randn(classes, embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    model.roi_heads.set_vocabulary(embeddings, [f"class {i}" for i in range(classes)])
    start = time.perf_counter()
    written = export_detector(model, root / "export", example_size=size, vocabulary="input")
    export_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    images = [
        torch.as_tensor(rng.integers(0, 256, (3, *size)).astype(np.float32)) for _ in range(4)
    ]
    ts = ExportedDetector(written["torchscript"])
    ort = ExportedDetector(written["onnx"], num_threads=threads)
    backends: dict[str, Callable[[torch.Tensor], Any]] = {
        "eager": lambda im: model([{"image": im}]),
        "torchscript": lambda im: ts(im, embeddings),
        "onnxruntime": lambda im: ort(im, embeddings),
    }
    wall: dict[str, list[float]] = {k: [] for k in backends}
    cpu: dict[str, list[float]] = {k: [] for k in backends}
    with torch.no_grad():
        for fn in backends.values():
            for i in range(warmup):
                fn(images[i % len(images)])
        for i in range(iters):
            for name, fn in backends.items():
                w, c = _time(fn, images[i % len(images)])
                wall[name].append(w)
                cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratios = {
        "torchscript_vs_eager": med["torchscript"] / med["eager"],
        "onnxruntime_vs_eager": med["onnxruntime"] / med["eager"],
    }
    return ratios, {
        "config": config,
        "weights": weights or "random init",
        "example_size": list(size),
        "classes": classes,
        "iters": iters,
        "warmup": warmup,
        "export_s": round(export_s, 2),
        **{f"{k}_ms": round(v * 1e3, 2) for k, v in med.items()},
        **{f"{k}_cpu_ms": round(v * 1e3, 2) for k, v in med_cpu.items()},
    }


def main() -> None:
    parser = argument_parser(__doc__, threads=1)
    parser.add_argument("--config", default="toy/vild.yaml")
    parser.add_argument("--weights", default=None, help="trained checkpoint (default: random init)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--classes", type=int, default=12, help="vocabulary size K")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parse_args(parser)
    iters, warmup = (10, 1) if args.quick else (args.iters, args.warmup)
    with tempfile.TemporaryDirectory(prefix="export_latency_") as root:
        ratios, measured = run(
            args.config,
            args.weights,
            list(args.opts),
            iters=iters,
            warmup=warmup,
            classes=args.classes,
            threads=args.threads,
            root=Path(root),
        )
    report("export_latency", args, baseline="eager Detectron2 model", ratios=ratios, **measured)


if __name__ == "__main__":
    main()
