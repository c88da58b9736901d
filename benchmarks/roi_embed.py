"""Benchmark the fused ``roi_embed`` against torchvision ``roi_align`` + mean at ViLD scale.

B = 2 images, C in {1024, 2048}, feature maps 28x28 .. 64x64 at stride 16, K = 600 proposals,
S = 7 bins, forward and forward+backward. "fused" is ``distill.ops.roi_embed`` (CPU: the vectorised
PyTorch path; CUDA: the fused kernel, plus the PyTorch path as "reference"); "unfused" is
``roi_align(...).mean((2, 3))``. Times are medians. Memory: on CUDA the measured peak allocation above
the inputs; on CPU the size of each method's largest intermediate (unfused: the [K, C, S, S] RoI-align
output; fused: the [K, H*W] weight map), since tracemalloc does not see torch allocations.

    python benchmarks/roi_embed.py [--quick] [--device cpu|cuda] [--threads N]
    python benchmarks/roi_embed.py --quick   # CPU: C=1024 at 28x28 only, one repeat (make bench)

Prints a table; the last stdout line is the JSON summary (``benchmarks/README.md``). Baseline:
unfused; ``ratios`` (unfused / fused, > 1: fused is better): ``fwd``, ``fwdbwd`` (time) and
``intermediate`` (memory), each the geometric mean over the configurations; per configuration in
``results``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import roi_align

from _cli import argument_parser, parse_args, report
from distill.ops import roi_embed, roi_embed_reference

STRIDE = 16
OUTPUT_SIZE = 7


def make_inputs(
    *, batch: int, channels: int, size: int, num_rois: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B, C, size, size] and ViLD-like proposals [K, 5] (16 px .. 80% of the image)."""
    gen = torch.Generator().manual_seed(seed)
    image = size * STRIDE
    centre = torch.rand(num_rois, 2, generator=gen) * image
    extent = torch.exp(
        torch.empty(num_rois, 2).uniform_(
            float(torch.log(torch.tensor(16.0))),
            float(torch.log(torch.tensor(0.8 * image))),
            generator=gen,
        )
    )
    boxes = torch.cat([centre - extent / 2, centre + extent / 2], dim=1).clamp(0, image)
    index = torch.randint(0, batch, (num_rois, 1), generator=gen).float()
    features = torch.randn(batch, channels, size, size, generator=gen)
    return features.to(device), torch.cat([index, boxes], dim=1).to(device)


def unfused(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    return roi_align(features, rois, OUTPUT_SIZE, 1.0 / STRIDE, 0, True).mean((2, 3))


def fused(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    return roi_embed(features, rois, output_size=OUTPUT_SIZE, spatial_scale=1.0 / STRIDE)


def reference(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    return roi_embed_reference(features, rois, output_size=OUTPUT_SIZE, spatial_scale=1.0 / STRIDE)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], *, device: torch.device, warmup: int, repeats: int
) -> float:
    """Median wall time in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cuda_peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak CUDA allocation during ``fn`` above what was allocated before, MiB."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def bench_config(
    *, channels: int, size: int, device: torch.device, warmup: int, repeats: int
) -> dict:
    features, rois = make_inputs(batch=2, channels=channels, size=size, num_rois=600, device=device)
    grad = torch.randn(rois.shape[0], channels, device=device)
    leaf = features.clone().requires_grad_(True)
    methods = {"fused": fused, "unfused": unfused}
    if device.type == "cuda":
        methods["reference"] = reference
    row: dict = {"B": 2, "C": channels, "H": size, "W": size, "K": rois.shape[0], "S": OUTPUT_SIZE}
    for name, fn in methods.items():

        def forward(fn=fn):
            with torch.no_grad():
                return fn(features, rois)

        def forward_backward(fn=fn):
            leaf.grad = None
            fn(leaf, rois).backward(grad)

        row[f"{name}_fwd_ms"] = time_call(forward, device=device, warmup=warmup, repeats=repeats)
        row[f"{name}_fwdbwd_ms"] = time_call(
            forward_backward, device=device, warmup=warmup, repeats=repeats
        )
        if device.type == "cuda":
            row[f"{name}_fwd_peak_mb"] = cuda_peak_mb(forward, device)
            row[f"{name}_fwdbwd_peak_mb"] = cuda_peak_mb(forward_backward, device)
    torch.testing.assert_close(fused(features, rois), unfused(features, rois), rtol=1e-4, atol=1e-4)
    elem = features.element_size()
    row["unfused_intermediate_mb"] = rois.shape[0] * channels * OUTPUT_SIZE**2 * elem / 2**20
    row["fused_intermediate_mb"] = (
        rois.shape[0] * size * size * elem / 2**20
        if device.type == "cpu"
        else rois.shape[0] * 2 * size * elem / 2**20
    )
    row["ratio_fwd"] = row["unfused_fwd_ms"] / row["fused_fwd_ms"]
    row["ratio_fwdbwd"] = row["unfused_fwdbwd_ms"] / row["fused_fwdbwd_ms"]
    row["ratio_intermediate"] = row["unfused_intermediate_mb"] / row["fused_intermediate_mb"]
    if device.type == "cuda":
        row["ratio_fwd_peak"] = row["unfused_fwd_peak_mb"] / max(row["fused_fwd_peak_mb"], 1e-6)
        row["ratio_fwdbwd_peak"] = row["unfused_fwdbwd_peak_mb"] / max(
            row["fused_fwdbwd_peak_mb"], 1e-6
        )
    return row


def print_table(rows: list[dict], device: torch.device) -> None:
    header = (
        f"{'C':>5} {'HxW':>6} | {'fwd fused':>10} {'unfused':>9} {'ratio':>6} | "
        f"{'f+b fused':>10} {'unfused':>9} {'ratio':>6} | {'interm. MB fused/unfused':>24}"
    )
    print(f"roi_embed benchmark on {device} (times: median ms; ratio = unfused / fused)")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['C']:>5} {r['H']:>3}x{r['W']:<2} | {r['fused_fwd_ms']:>10.2f} {r['unfused_fwd_ms']:>9.2f} "
            f"{r['ratio_fwd']:>6.2f} | {r['fused_fwdbwd_ms']:>10.2f} {r['unfused_fwdbwd_ms']:>9.2f} "
            f"{r['ratio_fwdbwd']:>6.2f} | {r['fused_intermediate_mb']:>10.1f} / "
            f"{r['unfused_intermediate_mb']:<10.1f}"
        )
        if device.type == "cuda":
            print(
                f"{'':>14}peak MB fwd fused/unfused/reference {r['fused_fwd_peak_mb']:.1f}/"
                f"{r['unfused_fwd_peak_mb']:.1f}/{r['reference_fwd_peak_mb']:.1f}; f+b "
                f"{r['fused_fwdbwd_peak_mb']:.1f}/{r['unfused_fwdbwd_peak_mb']:.1f}/"
                f"{r['reference_fwdbwd_peak_mb']:.1f}; "
                f"reference ms fwd {r['reference_fwd_ms']:.2f} f+b {r['reference_fwdbwd_ms']:.2f}"
            )


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parse_args(parser, argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    # CPU: no warmup (nothing to JIT; keeps the full run under ~2 minutes on 2 cores).
    if on_gpu:
        warmup, repeats = (2, 5) if args.quick else (3, 20)
    else:
        warmup, repeats = (0, 1) if args.quick else (0, 3)
    configs = [(1024, 28), (1024, 64), (2048, 28), (2048, 64)]
    if args.quick:
        configs = [(1024, 28), (1024, 64), (2048, 64)] if on_gpu else [(1024, 28)]
    rows = [
        bench_config(channels=c, size=s, device=device, warmup=warmup, repeats=repeats)
        for c, s in configs
    ]
    print_table(rows, device)
    ratios = {
        name: geometric_mean([row[f"ratio_{name}"] for row in rows])
        for name in ("fwd", "fwdbwd", "intermediate")
    }
    return report(
        "roi_embed",
        args,
        baseline="torchvision roi_align + mean (unfused)",
        ratios=ratios,
        device=torch.cuda.get_device_name(device) if on_gpu else "cpu",
        torch=torch.__version__,
        warmup=warmup,
        repeats=repeats,
        cpu_path="reference (separable weight map @ features)",
        results=rows,
    )


if __name__ == "__main__":
    main()
