"""Writing an :class:`~detectors.export.exportable.ExportableViLD` to TorchScript
(``torch.jit.trace``) and ONNX (opset 17, TorchScript-based exporter), with its model card."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from distill.utils import atomic_path

from .exportable import ExportableViLD
from .model_card import write_model_card

__all__ = ["VOCAB_MODES", "ONNX_OPSET", "example_size", "trace", "export_onnx", "export_detector"]

VOCAB_MODES = ("input", "baked")
"""``input``: ``forward(image, text_embeddings)``; ``baked``: ``forward(image)`` with a fixed vocabulary."""
ONNX_OPSET = 17


def example_size(cfg) -> tuple[int, int]:
    """``(H, W)`` of the example image traced by default: ``INPUT.MAX_SIZE_TEST`` square (exported graphs
    accept any size; the example only has to be a typical one)."""
    side = int(cfg.INPUT.MAX_SIZE_TEST)
    return side, side


def _example_embeddings(module: ExportableViLD, num_classes: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(num_classes, module.embed_dim, generator=generator), dim=-1)


def _example_args(
    module: ExportableViLD, image: Tensor, embeddings: Tensor | None
) -> tuple[Tensor, ...]:
    if module.baked:
        return (image,)
    if module.ensemble:  # both branches' weightings appear in the example
        return image, embeddings, torch.arange(embeddings.shape[0]) % 2 == 0
    return image, embeddings


def trace(
    module: ExportableViLD, example_image: Tensor, example_embeddings: Tensor | None
) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``module`` (checks off: NMS outputs are data dependent). Tracer warnings
    about Python values are silenced: the shape-dependent ones are handled by Detectron2's tracing-aware
    code (graphs are tested on other image sizes), the data-dependent ones are documented."""
    args = _example_args(module, example_image, example_embeddings)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, args, check_trace=False)


def export_onnx(
    module: ExportableViLD,
    path: str | os.PathLike,
    example_image: Tensor,
    example_embeddings: Tensor | None,
    *,
    opset: int = ONNX_OPSET,
) -> Path:
    """ONNX file of ``module`` (TorchScript-based exporter; ``K`` is a dynamic axis in input mode)."""
    args = _example_args(module, example_image, example_embeddings)
    inputs = module.input_names
    dynamic = {
        "image": {1: "H", 2: "W"},
        "boxes": {0: "N"},
        "scores": {0: "N"},
        "classes": {0: "N"},
    }
    if not module.baked:
        dynamic["text_embeddings"] = {0: "K"}
    if "seen" in inputs:
        dynamic["seen"] = {0: "K"}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(tmp),
            dynamo=False,
            input_names=inputs,
            output_names=["boxes", "scores", "classes"],
            dynamic_axes=dynamic,
            opset_version=opset,
        )
    return Path(path)


def export_detector(
    model: nn.Module,
    out_dir: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (128, 128),
    vocabulary: str = "input",
    names: Sequence[str] | None = None,
    text_embeddings: Tensor | None = None,
    seen: Tensor | Sequence[bool] | None = None,
    formats: Sequence[str] = ("torchscript", "onnx"),
    card: dict[str, Any] | None = None,
    pixel_format: str = "RGB",
    resize: tuple[int, int] | None = None,
) -> dict[str, Path]:
    """Write ``model.ts`` / ``model.onnx`` (per ``formats``) and the model card into ``out_dir``.

    Args:
        model: eager ``ViLDRCNN`` or ``BaronRCNN`` in eval mode.
        example_size: ``(H, W)`` of the example image traced (the graphs accept any size).
        vocabulary: ``"input"`` (embeddings an input, any vocabulary) or ``"baked"`` (``names`` +
            ``text_embeddings [K, D]`` fixed in the graph; both required). ``seen [K]``: ViLD-ensemble's
            per-class branch weighting of a baked vocabulary (default: names in the training vocabulary).
        card: model-card fields (teacher, training vocabulary, data, metrics...); export settings are added.
        pixel_format / resize: recorded in the card for :class:`ExportedDetector` (``INPUT.FORMAT``,
            ``(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``).
    Returns ``{format: path}`` plus ``"card"``.
    """
    if vocabulary not in VOCAB_MODES:
        raise ValueError(f"vocabulary mode must be one of {VOCAB_MODES}, got {vocabulary!r}")
    unknown = sorted(set(formats) - {"torchscript", "onnx"})
    if unknown or not formats:
        raise ValueError(
            f"formats must be a non-empty subset of ['torchscript', 'onnx'], got {list(formats)}"
        )
    if vocabulary == "baked":
        if names is None or text_embeddings is None:
            raise ValueError("a baked vocabulary needs names and text_embeddings")
        if len(names) != int(text_embeddings.shape[0]):
            raise ValueError(
                f"baked vocabulary: {len(names)} names but {int(text_embeddings.shape[0])} embeddings"
            )
    baked = vocabulary == "baked"
    module = ExportableViLD(
        model,
        text_embeddings=text_embeddings if baked else None,
        names=names if baked else None,
        seen=seen if baked else None,
    )
    height, width = (int(v) for v in example_size)
    if height < 1 or width < 1:
        raise ValueError(f"example_size must be positive, got {list(example_size)}")
    example = torch.as_tensor(model.pixel_mean).view(3, 1, 1).expand(3, height, width).clone()
    example += torch.rand(3, height, width, generator=torch.Generator().manual_seed(0)) * 64
    example_embeddings = (
        None if module.baked else _example_embeddings(module, max(len(names or ()), 3))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "torchscript" in formats:
        traced = trace(module, example, example_embeddings)
        with atomic_path(out / "model.ts") as tmp:
            traced.save(str(tmp))
        written["torchscript"] = out / "model.ts"
    if "onnx" in formats:
        written["onnx"] = export_onnx(module, out / "model.onnx", example, example_embeddings)
    shapes = {
        "image": "image [3, H, W]",
        "text_embeddings": "text_embeddings [K, D]",
        "seen": "seen [K] bool",
    }
    inputs = [shapes[name] for name in module.input_names]
    settings = {
        "vocabulary": vocabulary,
        "inputs": inputs,
        "outputs": ["boxes [N, 4]", "scores [N]", "classes [N]"],
        "image_size": "any (dynamic H, W)",
        "example_size": [height, width],
        "embed_dim": module.embed_dim,
        "pixel_format": pixel_format,
        "resize": list(resize) if resize else [min(height, width), max(height, width)],
        "pixel_mean": [float(v) for v in torch.as_tensor(model.pixel_mean).flatten()],
        "onnx_opset": ONNX_OPSET if "onnx" in formats else None,
        "torch": torch.__version__,
        "files": {k: v.name for k, v in written.items()},
        "score_thresh": float(model.roi_heads.box_predictor.test_score_thresh),
        "nms_thresh": float(model.roi_heads.box_predictor.test_nms_thresh),
        "detections_per_image": int(model.roi_heads.box_predictor.test_topk_per_image),
    }
    if vocabulary == "baked":
        settings["names"] = [str(n) for n in names]
    if module.ensemble:
        settings["ensemble_seen"] = (
            module.seen.tolist()
            if module.baked
            else "input: seen[k] = class k was trained on (see training_vocabulary.trained_on)"
        )
    written["card"] = write_model_card(out, {**(card or {}), "export": settings})
    return written
