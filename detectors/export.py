"""Export a ViLD or BARON detector to TorchScript and ONNX, with its vocabulary baked in or taken as an input.

:class:`ExportableViLD` wraps an eager ``ViLDRCNN`` (or ``BaronRCNN``: the same inference path, its region
embedding being the frozen text encoder of the pseudo words) and runs exactly its inference path on one image
(Detectron2's own backbone, RPN proposal selection, RoI pooler, box head, box decoding and
``fast_rcnn_inference_single_image``), except that the cosine classifier (at the test temperature) scores against the
``text_embeddings`` given to ``forward`` (or a baked buffer). It is traced with ``torch.jit.trace``
and exported to ONNX (opset 17, TorchScript-based exporter) by :func:`export_detector`, which writes
beside the files a model card (``model_card.json`` + ``MODEL_CARD.md``).

Exported graphs take one image ``[3, H, W]`` of any size (Detectron2's tracing-aware code keeps the
padding to the size divisibility, the anchors and the top-k sizes shape-dependent; ``H`` and ``W`` are
dynamic ONNX axes) and any number of classes ``K``. Like the eager model's, their input is the image
after the test transform: :func:`prepare_image` applies ``ResizeShortestEdge(MIN_SIZE_TEST,
MAX_SIZE_TEST)``. :class:`ExportedDetector` loads either file, checks inputs against the model card and
raises clear errors.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import ImageList

from distill.utils import atomic_path, write_json_atomic

from .modeling.roi_heads import ViLDROIHeads
from .modeling.vild_predictor import cosine_logits, ensemble_scores

__all__ = [
    "ExportableViLD", "ExportedDetector", "export_detector", "prepare_image", "write_model_card", "describe_model",
    "check_embeddings", "example_size", "rescale_boxes", "VOCAB_MODES",
    "ONNX_OPSET",
]

VOCAB_MODES = ("input", "baked")
"""``input``: ``forward(image, text_embeddings)``; ``baked``: ``forward(image)`` with a fixed vocabulary."""
ONNX_OPSET = 17
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


class ExportableViLD(nn.Module):
    """One-image ViLD / BARON inference as a traceable module.

    ``forward(image [3, H, W] float (0-255, ``INPUT.FORMAT`` channel order, any size, after the test
    resize), text_embeddings [K, D])``
    returns ``boxes [N, 4]`` (xyxy, in the image's pixels), ``scores [N]`` and ``classes [N]`` (int64
    indices into the vocabulary), N <= ``TEST.DETECTIONS_PER_IMAGE``, sorted by score. With
    ``text_embeddings`` given at construction (``[K, D]``) they are baked in as a buffer and ``forward``
    takes the image only. Embeddings are L2-normalized inside, as ``set_vocabulary`` does.

    ViLD-ensemble models weigh their two branches per class by ``seen [K]`` (bool: class trained on):
    a third input ``forward(image, text_embeddings, seen)``, or baked with the embeddings (``seen``
    given here, default: names of the training vocabulary, as ``set_vocabulary``).
    """

    def __init__(self, model: nn.Module, *, text_embeddings: Tensor | None = None,
                 names: Sequence[str] | None = None, seen: Tensor | Sequence[bool] | None = None) -> None:
        super().__init__()
        heads = getattr(model, "roi_heads", None)
        if not isinstance(heads, ViLDROIHeads):
            raise TypeError(f"ExportableViLD needs a ViLDRCNN or BaronRCNN (ViLDROIHeads or a subclass), got "
                            f"roi_heads {type(heads).__name__}")
        if model.proposal_generator is None:
            raise ValueError("ExportableViLD needs a proposal generator (MODEL.PROPOSAL_GENERATOR)")
        self.model = model.eval()
        self.embed_dim = int(heads.box_predictor.embed_dim)
        self.baked = text_embeddings is not None
        self.ensemble = heads.image_head is not None
        if text_embeddings is not None:
            check_embeddings(text_embeddings, self.embed_dim, source="baked vocabulary")
            self.register_buffer("text_embeddings", F.normalize(text_embeddings.detach().float(), dim=-1))
            if self.ensemble:
                self.register_buffer("seen", baked_seen(heads.box_predictor, text_embeddings.shape[0], names, seen))
        self.eval()  # exporters restore the wrapper's mode afterwards: it must be eval, not nn.Module's default

    @property
    def input_names(self) -> list[str]:
        """Graph inputs: ``image`` plus, unless baked, ``text_embeddings`` (and ``seen`` for ViLD-ensemble)."""
        return ["image"] if self.baked else ["image", "text_embeddings"] + (["seen"] if self.ensemble else [])

    def forward(self, image: Tensor, text_embeddings: Tensor | None = None,
                seen: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        heads = model.roi_heads
        predictor = heads.box_predictor
        if text_embeddings is None:
            if not self.baked:
                raise ValueError("this module takes the vocabulary as input: forward(image, text_embeddings)")
            classifier = self.text_embeddings
            seen = self.seen if self.ensemble else None
        else:
            classifier = F.normalize(text_embeddings.float(), dim=-1)
            if self.ensemble and seen is None:
                raise ValueError("a ViLD-ensemble module needs seen [K] (bool): forward(image, text_embeddings, seen)")
        height, width = image.shape[-2], image.shape[-1]
        x = (image - model.pixel_mean) / model.pixel_std
        images = ImageList.from_tensors([x], model.backbone.size_divisibility)
        features = model.backbone(images.tensor)
        # RPN.forward at inference (Detectron2 0.6; _decode_proposals is its anchor + delta decoding)
        rpn = model.proposal_generator
        rpn_features = [features[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(rpn_features)
        logits, deltas = rpn.rpn_head(rpn_features)
        logits = [s.permute(0, 2, 3, 1).flatten(1) for s in logits]
        deltas = [d.view(d.shape[0], -1, rpn.anchor_generator.box_dim, d.shape[-2], d.shape[-1])
                  .permute(0, 3, 4, 1, 2).flatten(1, -2) for d in deltas]
        proposals = find_top_rpn_proposals(rpn._decode_proposals(anchors, deltas), logits, images.image_sizes,
                                           rpn.nms_thresh, rpn.pre_nms_topk[False], rpn.post_nms_topk[False],
                                           rpn.min_box_size, False)
        # RoI heads with the given vocabulary (ViLDROIHeads._forward_box + ViLDOutputLayers.inference)
        proposal_boxes = proposals[0].proposal_boxes
        pooled = heads.box_pooler([features[f] for f in heads.box_in_features], [proposal_boxes])
        box_features = heads.box_head(pooled).flatten(1)
        region = predictor.embed(box_features)  # BARON: text encoder of the pseudo words (no dropout in eval)
        class_logits = cosine_logits(region, classifier, temperature=predictor.test_temperature,
                                     background=F.normalize(predictor.bg_embedding, dim=0))
        probs = F.softmax(class_logits, dim=-1)
        if self.ensemble:  # ViLDOutputLayers.predict_probs with the distillation branch
            image_region = heads._image_embed(pooled)
            image_probs = F.softmax(cosine_logits(image_region, classifier, temperature=predictor.test_temperature),
                                    dim=-1)
            foreground = ensemble_scores(probs[:, :-1], image_probs, seen.bool(), weight=predictor.ensemble_weight)
            probs = torch.cat([foreground, probs[:, -1:]], dim=1)
        boxes = predictor.box2box_transform.apply_deltas(predictor.bbox_pred(box_features), proposal_boxes.tensor)
        instances, _ = fast_rcnn_inference_single_image(boxes, probs, (height, width), predictor.test_score_thresh,
                                                        predictor.test_nms_thresh, predictor.test_topk_per_image)
        instances = detector_postprocess(instances, height, width)  # clip + drop empty boxes, as GeneralizedRCNN
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def baked_seen(predictor: nn.Module, num_classes: int, names: Sequence[str] | None,
               seen: Tensor | Sequence[bool] | None) -> Tensor:
    """``seen [K]`` bool for a baked ViLD-ensemble vocabulary: given, or names in the training vocabulary."""
    from distill.vocab import normalize_name

    if seen is None:
        if names is None:
            raise ValueError("a baked ViLD-ensemble vocabulary needs names (or seen) to weigh its two branches")
        seen = [normalize_name(n) in predictor.training_names for n in names]
    seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
    if seen.numel() != num_classes:
        raise ValueError(f"seen must have {num_classes} entries (one per class), got {seen.numel()}")
    return seen


def check_embeddings(embeddings: Any, embed_dim: int, *, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``embeddings`` is a finite ``[K >= 1, embed_dim]`` tensor."""
    shape = list(getattr(embeddings, "shape", []))
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"{source}: vocabulary embeddings must be [K >= 1, {embed_dim}], got shape {shape}")
    if shape[1] != embed_dim:
        raise ValueError(f"{source}: vocabulary embedding size {shape[1]} does not match the model's text "
                         f"embedding size {embed_dim} (embeddings must come from the model's teacher)")
    if not bool(torch.isfinite(torch.as_tensor(embeddings).detach().float()).all()):
        raise ValueError(f"{source}: vocabulary embeddings contain non-finite values")


# ---------------------------------------------------------------------------------------------- images
def example_size(cfg) -> tuple[int, int]:
    """``(H, W)`` of the example image traced by default: ``INPUT.MAX_SIZE_TEST`` square (exported graphs
    accept any size; the example only has to be a typical one)."""
    side = int(cfg.INPUT.MAX_SIZE_TEST)
    return side, side


@dataclass(frozen=True)
class PreparedImage:
    """An image after the test transform: ``tensor [3, H, W]`` float (0-255), its size ``image_hw`` and
    ``scale`` = (resized / original height, width): divide boxes by it."""

    tensor: Tensor
    image_hw: tuple[int, int]
    scale: tuple[float, float]


def prepare_image(image: np.ndarray, *, min_size: int, max_size: int) -> PreparedImage:
    """Resize ``image [H0, W0, 3]`` uint8 (model channel order) like Detectron2's test transform
    ``ResizeShortestEdge(min_size, max_size)`` (what ``DefaultPredictor`` feeds the eager model)."""
    from detectron2.data import transforms as T

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected an [H, W, 3] image array, got {getattr(image, 'shape', type(image))}")
    h0, w0 = image.shape[:2]
    new_h, new_w = T.ResizeShortestEdge.get_output_shape(h0, w0, min_size, max_size)
    resized = T.ResizeTransform(h0, w0, new_h, new_w).apply_image(image) if (new_h, new_w) != (h0, w0) else image
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
    return PreparedImage(tensor, (new_h, new_w), (new_h / h0, new_w / w0))


# ---------------------------------------------------------------------------------------------- export
def _example_embeddings(module: ExportableViLD, num_classes: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(num_classes, module.embed_dim, generator=generator), dim=-1)


def _example_args(module: ExportableViLD, image: Tensor, embeddings: Tensor | None) -> tuple[Tensor, ...]:
    if module.baked:
        return (image,)
    if module.ensemble:  # both branches' weightings appear in the example
        return image, embeddings, torch.arange(embeddings.shape[0]) % 2 == 0
    return image, embeddings


def trace(module: ExportableViLD, example_image: Tensor, example_embeddings: Tensor | None) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``module`` (checks off: NMS outputs are data dependent). Tracer warnings
    about Python values are silenced: the shape-dependent ones are handled by Detectron2's tracing-aware
    code (graphs are tested on other image sizes), the data-dependent ones are documented."""
    args = _example_args(module, example_image, example_embeddings)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, args, check_trace=False)


def export_onnx(module: ExportableViLD, path: str | os.PathLike, example_image: Tensor,
                example_embeddings: Tensor | None, *, opset: int = ONNX_OPSET) -> Path:
    """ONNX file of ``module`` (TorchScript-based exporter; ``K`` is a dynamic axis in input mode)."""
    args = _example_args(module, example_image, example_embeddings)
    inputs = module.input_names
    dynamic = {"image": {1: "H", 2: "W"}, "boxes": {0: "N"}, "scores": {0: "N"}, "classes": {0: "N"}}
    if not module.baked:
        dynamic["text_embeddings"] = {0: "K"}
    if "seen" in inputs:
        dynamic["seen"] = {0: "K"}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(tmp), dynamo=False, input_names=inputs,
                          output_names=["boxes", "scores", "classes"], dynamic_axes=dynamic, opset_version=opset)
    return Path(path)


def export_detector(model: nn.Module, out_dir: str | os.PathLike, *, example_size: tuple[int, int] = (128, 128),
                    vocabulary: str = "input", names: Sequence[str] | None = None,
                    text_embeddings: Tensor | None = None, seen: Tensor | Sequence[bool] | None = None,
                    formats: Sequence[str] = ("torchscript", "onnx"),
                    card: dict[str, Any] | None = None, pixel_format: str = "RGB",
                    resize: tuple[int, int] | None = None) -> dict[str, Path]:
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
        raise ValueError(f"formats must be a non-empty subset of ['torchscript', 'onnx'], got {list(formats)}")
    if vocabulary == "baked":
        if names is None or text_embeddings is None:
            raise ValueError("a baked vocabulary needs names and text_embeddings")
        if len(names) != int(text_embeddings.shape[0]):
            raise ValueError(f"baked vocabulary: {len(names)} names but {int(text_embeddings.shape[0])} embeddings")
    baked = vocabulary == "baked"
    module = ExportableViLD(model, text_embeddings=text_embeddings if baked else None, names=names if baked else None,
                            seen=seen if baked else None)
    height, width = (int(v) for v in example_size)
    if height < 1 or width < 1:
        raise ValueError(f"example_size must be positive, got {list(example_size)}")
    example = torch.as_tensor(model.pixel_mean).view(3, 1, 1).expand(3, height, width).clone()
    example += torch.rand(3, height, width, generator=torch.Generator().manual_seed(0)) * 64
    example_embeddings = None if module.baked else _example_embeddings(module, max(len(names or ()), 3))
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
    shapes = {"image": "image [3, H, W]", "text_embeddings": "text_embeddings [K, D]", "seen": "seen [K] bool"}
    inputs = [shapes[name] for name in module.input_names]
    settings = {"vocabulary": vocabulary, "inputs": inputs, "outputs": ["boxes [N, 4]", "scores [N]", "classes [N]"],
                "image_size": "any (dynamic H, W)", "example_size": [height, width], "embed_dim": module.embed_dim,
                "pixel_format": pixel_format,
                "resize": list(resize) if resize else [min(height, width), max(height, width)],
                "pixel_mean": [float(v) for v in torch.as_tensor(model.pixel_mean).flatten()],
                "onnx_opset": ONNX_OPSET if "onnx" in formats else None, "torch": torch.__version__,
                "files": {k: v.name for k, v in written.items()},
                "score_thresh": float(model.roi_heads.box_predictor.test_score_thresh),
                "nms_thresh": float(model.roi_heads.box_predictor.test_nms_thresh),
                "detections_per_image": int(model.roi_heads.box_predictor.test_topk_per_image)}
    if vocabulary == "baked":
        settings["names"] = [str(n) for n in names]
    if module.ensemble:
        settings["ensemble_seen"] = (module.seen.tolist() if module.baked else
                                     "input: seen[k] = class k was trained on (see training_vocabulary.trained_on)")
    written["card"] = write_model_card(out, {**(card or {}), "export": settings})
    return written


def describe_model(cfg, weights: str | os.PathLike, *, config_file: str | None = None) -> dict[str, Any]:
    """Model-card fields of a trained detector: teacher, training vocabulary, data, metrics, weights.

    Metrics are the run's ``ov_metrics.json`` beside ``weights`` when present.
    """
    from distill.utils import sha256_file

    from .modeling.roi_heads import training_vocabulary

    names, _, seen, fingerprint = training_vocabulary(cfg)
    weights = Path(weights)
    metrics_path = weights.with_name("ov_metrics.json")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
    teacher = cfg.MODEL.VILD.TEACHER
    baron = cfg.MODEL.META_ARCHITECTURE == "BaronRCNN"
    if baron:
        method = "BARON-ensemble" if cfg.MODEL.VILD.ENSEMBLE else "BARON"
        test_temperature = float(cfg.MODEL.BARON.TEST_TEMPERATURE or cfg.MODEL.VILD.TEMPERATURE)
    else:
        method = "ViLD-ensemble" if cfg.MODEL.VILD.ENSEMBLE else ("ViLD" if cfg.MODEL.VILD.DISTILL.ENABLED else "ViLD-text")
        test_temperature = float(cfg.MODEL.VILD.TEMPERATURE)
    return {
        "model": {"method": method, "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
                  "backbone": cfg.MODEL.BACKBONE.NAME, "weights": str(weights), "weights_sha256": sha256_file(weights),
                  "config": config_file, "temperature": float(cfg.MODEL.VILD.TEMPERATURE),
                  "test_temperature": test_temperature},
        "teacher": {"name": teacher.NAME, "model_name": teacher.MODEL_NAME, "pretrained": teacher.PRETRAINED,
                    "model_config": teacher.MODEL_CONFIG, "templates": teacher.TEMPLATES, "fingerprint": fingerprint,
                    "text_embeddings": cfg.MODEL.VILD.TEXT_EMBEDDINGS},
        "training_vocabulary": {"names": names, "trained_on": [n for n, s in zip(names, seen.tolist()) if s],
                                "not_trained_on": [n for n, s in zip(names, seen.tolist()) if not s]},
        "data": {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST),
                 "distillation": {"enabled": bool(cfg.MODEL.VILD.DISTILL.ENABLED),
                                  "source": cfg.MODEL.VILD.DISTILL.SOURCE, "mode": cfg.MODEL.VILD.DISTILL.MODE}},
        "metrics": metrics if metrics is not None else f"none found ({metrics_path} missing)",
    }


def write_model_card(out_dir: str | os.PathLike, card: dict[str, Any]) -> Path:
    """``model_card.json`` (machine readable, read by :class:`ExportedDetector`) and ``MODEL_CARD.md``."""
    out = Path(out_dir)
    write_json_atomic(out / CARD_JSON, card, indent=1)
    lines = ["# Model card", ""]
    for section, value in card.items():
        lines += [f"## {section.replace('_', ' ')}", ""]
        if isinstance(value, dict):
            lines += [f"- **{k}**: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()]
        else:
            lines.append(json.dumps(value) if not isinstance(value, str) else value)
        lines.append("")
    with atomic_path(out / CARD_MD) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return out / CARD_JSON


# ---------------------------------------------------------------------------------------------- runtime
class ExportedDetector:
    """Run an exported ``model.ts`` or ``model.onnx`` (onnxruntime, CPU) with input checks.

    ``detector(image [3, H, W] float, text_embeddings [K, D] | None, seen [K] | None) -> (boxes [N, 4],
    scores [N], classes [N])`` as numpy arrays (``seen``: ViLD-ensemble input-vocabulary exports only,
    :attr:`needs_seen`); ``detector.detect(image_hwc_uint8, ...)`` applies the test resize first and
    returns boxes in the original image's pixels. The model card beside the file supplies the
    vocabulary mode, inputs, embedding size and resize.
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"exported model {self.path} does not exist")
        card_path = self.path.with_name(CARD_JSON)
        if not card_path.is_file():
            raise FileNotFoundError(f"{self.path}: no {CARD_JSON} beside it (written by tools/export_model.py)")
        try:
            self.card = json.loads(card_path.read_text(encoding="utf-8"))
            settings = self.card["export"]
            self.baked = settings["vocabulary"] == "baked"
            self.embed_dim = int(settings["embed_dim"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{card_path}: not a model card of tools/export_model.py ({err!r})") from err
        self.names = list(settings.get("names") or [])
        self.needs_seen = any(str(i).startswith("seen") for i in settings.get("inputs", []))
        self.settings = settings
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = options.inter_op_num_threads = int(num_threads)
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            self.module = None
        elif self.path.suffix in (".ts", ".pt"):
            self.module = torch.jit.load(str(self.path), map_location="cpu")
            self.session = None
        else:
            raise ValueError(f"{self.path}: unknown exported-model suffix {self.path.suffix!r} (expected .ts or .onnx)")

    def __call__(self, image: Tensor | np.ndarray, text_embeddings: Tensor | np.ndarray | None = None,
                 seen: Tensor | np.ndarray | Sequence[bool] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"{self.path}: image must be a [3, H, W] tensor (channels first, 0-255, "
                             f"{self.settings.get('pixel_format', 'RGB')}), got {list(image.shape)}")
        if self.baked and text_embeddings is not None:
            raise ValueError(f"{self.path}: the vocabulary is baked in ({len(self.names)} names); pass no embeddings "
                             f"or export with --vocabulary input")
        if not self.baked:
            if text_embeddings is None:
                raise ValueError(f"{self.path}: this model takes the vocabulary as input: pass text_embeddings [K, "
                                 f"{self.embed_dim}]")
            text_embeddings = torch.as_tensor(text_embeddings, dtype=torch.float32)
            check_embeddings(text_embeddings, self.embed_dim, source=str(self.path))
        args: tuple[Tensor, ...] = (image,) if self.baked else (image, text_embeddings)
        if self.needs_seen:
            if seen is None:
                raise ValueError(f"{self.path}: a ViLD-ensemble export needs seen [K] (bool, class trained on) with "
                                 f"the embeddings")
            seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
            if seen.numel() != text_embeddings.shape[0]:
                raise ValueError(f"{self.path}: seen has {seen.numel()} entries for {text_embeddings.shape[0]} classes")
            args = (*args, seen)
        elif seen is not None:
            raise ValueError(f"{self.path}: seen is only an input of ViLD-ensemble exports with an input vocabulary")
        if self.session is not None:
            names = [i.name for i in self.session.get_inputs()]
            outputs = self.session.run(None, {n: a.numpy() for n, a in zip(names, args)})
        else:
            with torch.no_grad():
                outputs = [o.numpy() for o in self.module(*args)]
        boxes, scores, classes = outputs
        return boxes, scores, classes.astype(np.int64)

    def detect(self, image: np.ndarray, text_embeddings: Tensor | np.ndarray | None = None,
               seen: Tensor | np.ndarray | Sequence[bool] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections on an ``[H0, W0, 3]`` uint8 image in the model's channel order, boxes in its pixels."""
        low, high = self.settings["resize"]
        prepared = prepare_image(image, min_size=low, max_size=high)
        boxes, scores, classes = self(prepared.tensor, text_embeddings, seen)
        return rescale_boxes(boxes, prepared), scores, classes


def rescale_boxes(boxes: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Boxes ``[N, 4]`` of a prepared (resized) image, clipped to it, in the original image's pixels."""
    h, w = prepared.image_hw
    boxes = np.asarray(boxes, dtype=np.float32).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w) / prepared.scale[1]
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h) / prepared.scale[0]
    return boxes
