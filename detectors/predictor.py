"""Open-vocabulary inference with a trained ViLD or BARON detector: any vocabulary, eager or exported weights.

    predictor = OVPredictor(cfg, "output/toy/vild/model_final.pth", vocabulary=["cat", "dog", "red star"])
    instances = predictor(image)              # [H, W, 3] uint8 RGB -> Detectron2 Instances, original pixels
    predictor.set_vocabulary("circle, star")  # new classes, no weight change

Vocabulary embeddings (:class:`VocabularyEncoder`) are rows of the model's training classifier file
when a name is in it, otherwise computed by the configured teacher's text encoder (prompt ensemble
``MODEL.VILD.TEACHER.TEMPLATES``) and cached under ``$OVDISTILL_CACHE/vild/vocabulary`` keyed by the
model's teacher fingerprint, so a vocabulary is encoded once and later runs load no teacher. The
teacher must be the one the model was trained with (same fingerprint), else its embeddings would live
in another space: that is an error.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from distill.utils import cache_dir, sha256_json
from distill.vocab import normalize_name

from .modeling.text_embeddings import load_text_embeddings, save_text_embeddings

__all__ = ["IMAGE_SUFFIXES", "parse_vocabulary", "read_image", "load_inference_config", "load_checkpoint",
           "VocabularyEncoder", "OVPredictor"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def parse_vocabulary(vocabulary: str | Sequence[str], *, field: str = "vocabulary") -> list[str]:
    """Class names from ``"cat, dog,red star"``, a list of names, or ``@file.txt`` (one name per line).

    Raises ``ValueError`` naming ``field`` for an empty vocabulary, empty entries or duplicates
    (ignoring case and spaces).
    """
    if isinstance(vocabulary, str):
        if vocabulary.startswith("@"):
            path = Path(vocabulary[1:])
            if not path.is_file():
                raise FileNotFoundError(f"{field}: vocabulary file {path} does not exist")
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            field = f"{field} ({path})"
        else:
            names = [n.strip() for n in vocabulary.split(",")]
    else:
        names = [str(n).strip() for n in vocabulary]
    if not any(names):
        raise ValueError(f"{field}: the vocabulary is empty; give at least one class name (e.g. 'cat,dog')")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(f"{field}: empty class name at position(s) {empty} in {names}")
    keys = [normalize_name(n) for n in names]
    duplicates = sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{field}: duplicate class names {duplicates} (case/space-insensitive)")
    return names


def read_image(path: str | os.PathLike, *, format: str = "RGB") -> np.ndarray:
    """``[H, W, 3]`` uint8 image in ``format`` ("RGB" / "BGR"); ``ValueError`` naming the file otherwise."""
    from PIL import UnidentifiedImageError

    from detectron2.data.detection_utils import read_image as d2_read_image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} does not exist")
    try:
        image = d2_read_image(str(path), format=format)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable image file ({type(err).__name__}: {err})") from err
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"{path}: expected a colour image, got an array of shape {image.shape}")
    return image


def load_inference_config(config: str | os.PathLike | CfgNode, *, weights: str | os.PathLike | None = None,
                          opts: Sequence[str] = ()) -> CfgNode:
    """The config to build a trained detector from, with its training classifier file resolved.

    ``MODEL.VILD.TEXT_EMBEDDINGS`` (needed to build the model: it fixes the embedding size and training
    vocabulary) is taken, when empty, from the run's resolved ``config.yaml`` beside checkpoint
    ``weights`` or the model card beside exported ones, else computed with the teacher
    (``detectors.prepare.ensure_text_embeddings``). Toy datasets are registered.
    """
    from .prepare import (build_teacher_from_cfg, ensure_text_embeddings, ensure_text_encoder, load_config,
                          setup_toy_datasets)

    cfg = config.clone() if isinstance(config, CfgNode) else load_config(config, opts)
    if isinstance(config, CfgNode) and opts:
        cfg.merge_from_list(list(opts))
    cfg.defrost()
    world = setup_toy_datasets(cfg)
    if cfg.MODEL.META_ARCHITECTURE not in ("ViLDRCNN", "BaronRCNN"):
        raise ValueError(f"open-vocabulary inference needs MODEL.META_ARCHITECTURE ViLDRCNN or BaronRCNN, got "
                         f"{cfg.MODEL.META_ARCHITECTURE!r}")
    if not cfg.MODEL.VILD.TEXT_EMBEDDINGS and weights is not None:
        source, path = _recorded_file(Path(weights), "VILD", "TEXT_EMBEDDINGS")
        if path:
            cfg.MODEL.VILD.TEXT_EMBEDDINGS = path
            logger.info("training classifier from %s: %s", source, path)
    if not cfg.MODEL.VILD.TEXT_EMBEDDINGS:
        ensure_text_embeddings(cfg, lambda: build_teacher_from_cfg(cfg, world=world))
    # BARON's region embedding runs the teacher's text tower (MODEL.BARON.TEXT_ENCODER: the checkpoint holds
    # its weights, the file fixes its shape); exported files build no eager model and do not need it
    exported = weights is not None and Path(weights).suffix in (".ts", ".onnx")
    baron = cfg.MODEL.META_ARCHITECTURE == "BaronRCNN"
    if baron and not exported and not Path(cfg.MODEL.BARON.TEXT_ENCODER).is_file():
        source, path = _recorded_file(Path(weights), "BARON", "TEXT_ENCODER") if weights is not None else (None, "")
        if path:
            cfg.MODEL.BARON.TEXT_ENCODER = path
            logger.info("pseudo-word text encoder from %s: %s", source, path)
        else:
            ensure_text_encoder(cfg, lambda: build_teacher_from_cfg(cfg, world=world))
    return cfg


def load_checkpoint(model: torch.nn.Module, weights: str | os.PathLike, *, text_embeddings: str = "") -> None:
    """Load a Detectron2 checkpoint into ``model``, refusing (``ValueError`` naming the files) parameters whose
    shapes differ, which Detectron2's checkpointer would skip with a warning. The usual cause is a training
    classifier (``text_embeddings``) of another teacher, whose embedding size differs from the model's."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights {weights} do not exist")
    state = torch.load(weights, map_location="cpu", weights_only=False)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: not a Detectron2 checkpoint (expected a state dict under 'model')")
    expected = model.state_dict()
    wrong = {k: (list(v.shape), list(expected[k].shape)) for k, v in state.items()
             if k in expected and hasattr(v, "shape") and tuple(v.shape) != tuple(expected[k].shape)}
    if wrong:
        hint = (f"; the model's text embedding size comes from MODEL.VILD.TEXT_EMBEDDINGS {text_embeddings}: use the "
                f"classifier file of the teacher the model was trained with") if text_embeddings else ""
        listing = ", ".join(f"{k} {a} vs model {b}" for k, (a, b) in list(wrong.items())[:4])
        raise ValueError(f"{weights}: {len(wrong)} parameters do not match the configured model ({listing}){hint}")
    DetectionCheckpointer(model).load(str(weights))


def _recorded_file(weights: Path, group: str, key: str) -> tuple[Path | None, str]:
    """The file ``MODEL.<group>.<key>`` named when ``weights`` were made: the run's resolved ``config.yaml``
    (checkpoints) or, for the training classifier, the model card (exports); ``(None, "")`` if none exists
    on disk."""
    import json

    from .prepare import load_config

    run_config, card = weights.with_name("config.yaml"), weights.with_name("model_card.json")
    path, source = "", None
    if card.is_file() and (group, key) == ("VILD", "TEXT_EMBEDDINGS"):
        path = str(json.loads(card.read_text(encoding="utf-8")).get("teacher", {}).get("text_embeddings") or "")
        source = card
    elif run_config.is_file():
        path, source = str(load_config(run_config).MODEL[group][key]), run_config
    return (source, path) if path and Path(path).is_file() else (None, "")


class VocabularyEncoder:
    """``encoder(names) -> [K, D]`` normalized text embeddings in the space of the model's teacher.

    Args:
        cfg: config with ``MODEL.VILD.TEACHER`` (how to build the teacher) and ``TEXT_EMBEDDINGS``
            (the training classifier: its names are served from it, its fingerprint is the reference).
        teacher: optional factory returning the teacher (default: ``build_teacher_from_cfg(cfg)``).
        cache: read/write ``$OVDISTILL_CACHE/vild/vocabulary``.
    """

    def __init__(self, cfg: CfgNode, *, teacher: Callable[[], Any] | None = None, cache: bool = True) -> None:
        self.table = load_text_embeddings(cfg.MODEL.VILD.TEXT_EMBEDDINGS)
        self.fingerprint = self.table.teacher_fingerprint
        self.templates = cfg.MODEL.VILD.TEACHER.TEMPLATES
        self.cache = cache
        self._cfg = cfg
        self._factory = teacher
        self._teacher = None
        self.teacher_loads = 0  # how often a teacher was built (0 when everything came from files)

    @property
    def embed_dim(self) -> int:
        return self.table.embed_dim

    def cache_path(self, names: Sequence[str]) -> Path:
        key = sha256_json([list(self.templates) if not isinstance(self.templates, str) else self.templates,
                           [normalize_name(n) for n in names]])[:16]
        return cache_dir("vild", "vocabulary", f"{self.fingerprint[:16]}-{key}.pt")

    def teacher(self) -> Any:
        if self._teacher is None:
            from .prepare import build_teacher_from_cfg

            teacher = self._factory() if self._factory is not None else build_teacher_from_cfg(self._cfg)
            self.teacher_loads += 1
            if str(teacher.fingerprint) != str(self.fingerprint):
                raise ValueError(f"the configured teacher (MODEL.VILD.TEACHER, fingerprint "
                                 f"{str(teacher.fingerprint)[:16]}...) is not the one the model was trained with "
                                 f"(fingerprint {self.fingerprint[:16]}... in {self.table.source}); its text "
                                 f"embeddings would not match the detector: configure the training teacher")
            self._teacher = teacher
        return self._teacher

    def __call__(self, names: Sequence[str], *, field: str = "vocabulary") -> Tensor:
        names = parse_vocabulary(names, field=field)
        index = {normalize_name(n): i for i, n in enumerate(self.table.names)}
        missing = [n for n in names if normalize_name(n) not in index]
        rows = torch.zeros(len(names), self.embed_dim)
        known = [i for i, n in enumerate(names) if normalize_name(n) in index]
        if known:
            rows[known] = self.table.select([names[i] for i in known])
        if missing:
            rows[[i for i, n in enumerate(names) if normalize_name(n) not in index]] = self._encode(missing, field)
        return rows

    def _encode(self, names: list[str], field: str) -> Tensor:
        from distill.teachers import TextTooLongError

        path = self.cache_path(names)
        if self.cache and path.is_file():
            cached = load_text_embeddings(path)
            if cached.teacher_fingerprint == self.fingerprint and cached.embed_dim == self.embed_dim:
                return cached.select(names)
        teacher = self.teacher()
        try:
            embeddings = teacher.text_classifier(names, templates=self.templates).float().cpu()
        except ValueError as err:  # distill.teachers names the class and the prompt that does not fit
            if not isinstance(err, TextTooLongError) and not isinstance(err.__cause__, TextTooLongError):
                raise
            raise ValueError(f"{field}: a class name is too long for the teacher's text encoder (context length "
                             f"{teacher.context_length} tokens, prompt templates {self.templates!r}): {err}") from err
        if embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"{field}: the teacher's text embeddings have size {embeddings.shape[1]}, the model "
                             f"expects {self.embed_dim} ({self.table.source})")
        if self.cache:
            save_text_embeddings(path, names, embeddings, teacher_fingerprint=self.fingerprint)
        return embeddings


class OVPredictor:
    """Detectron2-``DefaultPredictor``-like inference over any vocabulary.

    ``weights``: a ``.pth`` checkpoint (eager model) or an exported ``model.ts`` / ``model.onnx``
    (:class:`detectors.export.ExportedDetector`; input-vocabulary exports only). ``__call__(image)``
    takes ``[H, W, 3]`` uint8 in ``input_format`` (default RGB) and returns ``Instances`` with
    ``pred_boxes`` (original pixels), ``scores``, ``pred_classes`` (indices into :attr:`vocabulary`).
    ``vocabulary`` defaults to the training classifier's names; ``teacher`` is an optional factory of the
    text teacher (default: built from ``MODEL.VILD.TEACHER``); ``field`` names the vocabulary option
    in error messages (the demo passes ``--vocabulary``).
    """

    def __init__(self, cfg: CfgNode | str | os.PathLike, weights: str | os.PathLike, *,
                 vocabulary: str | Sequence[str] | None = None, teacher: Callable[[], Any] | None = None,
                 input_format: str = "RGB", cache: bool = True, opts: Sequence[str] = (),
                 field: str = "vocabulary") -> None:
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise FileNotFoundError(f"weights {self.weights} do not exist")
        self.cfg = load_inference_config(cfg, weights=self.weights, opts=opts)
        self.encoder = VocabularyEncoder(self.cfg, teacher=teacher, cache=cache)
        self.input_format = input_format
        self.exported = None
        self.model = None
        if self.weights.suffix in (".ts", ".onnx"):
            from .export import ExportedDetector

            self.exported = ExportedDetector(self.weights)
            if self.exported.baked:
                raise ValueError(f"{self.weights}: the vocabulary is baked in; OVPredictor needs an export made "
                                 f"with --vocabulary input")
            if self.exported.embed_dim != self.encoder.embed_dim:
                raise ValueError(f"{self.weights}: vocabulary embedding size {self.exported.embed_dim} does not "
                                 f"match the config's text embeddings ({self.encoder.embed_dim}, "
                                 f"{self.cfg.MODEL.VILD.TEXT_EMBEDDINGS})")
        else:
            self.model = build_model(self.cfg).eval()
            load_checkpoint(self.model, self.weights, text_embeddings=self.cfg.MODEL.VILD.TEXT_EMBEDDINGS)
        self.resize = T.ResizeShortestEdge([self.cfg.INPUT.MIN_SIZE_TEST] * 2, self.cfg.INPUT.MAX_SIZE_TEST)
        self.vocabulary: list[str] = []
        self.embeddings = torch.zeros(0, self.encoder.embed_dim)
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, field=field)
        else:
            self.set_vocabulary(self.encoder.table.names)

    def set_vocabulary(self, vocabulary: str | Sequence[str], embeddings: Tensor | None = None, *,
                       field: str = "vocabulary") -> None:
        """Classify over ``vocabulary`` (names, ``"a,b"`` or ``@file``); ``embeddings [K, D]`` skip the teacher.
        ``field`` names the option in error messages."""
        from .export import check_embeddings

        names = parse_vocabulary(vocabulary, field=field)
        if embeddings is None:
            embeddings = self.encoder(names, field=field)
        check_embeddings(embeddings, self.encoder.embed_dim, source="OVPredictor.set_vocabulary")
        if embeddings.shape[0] != len(names):
            raise ValueError(f"OVPredictor.set_vocabulary: {len(names)} names but {embeddings.shape[0]} embeddings")
        self.vocabulary, self.embeddings = names, embeddings.float()
        if self.model is not None:
            self.model.roi_heads.set_vocabulary(self.embeddings, names)

    def _exported_seen(self) -> list[bool]:
        """ViLD-ensemble's per-class weighting for an exported model: names its model card lists as trained on."""
        trained = self.exported.card.get("training_vocabulary", {}).get("trained_on")
        if trained is None:
            raise ValueError(f"{self.weights}: a ViLD-ensemble export needs training_vocabulary.trained_on in its "
                             f"model card")
        known = {normalize_name(n) for n in trained}
        return [normalize_name(n) in known for n in self.vocabulary]

    def _to_model_format(self, image: np.ndarray) -> np.ndarray:
        model_format = self.cfg.INPUT.FORMAT
        if self.input_format != model_format:
            if {self.input_format, model_format} != {"RGB", "BGR"}:
                raise ValueError(f"cannot convert {self.input_format} images to {model_format}")
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image)

    def __call__(self, image: np.ndarray) -> Instances:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"OVPredictor: expected an [H, W, 3] uint8 image, got "
                             f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}")
        image = self._to_model_format(image)
        height, width = image.shape[:2]
        if self.exported is not None:
            seen = self._exported_seen() if self.exported.needs_seen else None
            boxes, scores, classes = self.exported.detect(image, self.embeddings, seen)
            out = Instances((height, width))
            out.pred_boxes = Boxes(torch.as_tensor(boxes))
            out.scores = torch.as_tensor(scores)
            out.pred_classes = torch.as_tensor(classes)
            return out
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            return self.model([{"image": tensor, "height": height, "width": width}])[0]["instances"].to("cpu")
