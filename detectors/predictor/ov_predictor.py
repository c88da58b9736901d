"""``OVPredictor``: Detectron2-``DefaultPredictor``-like inference over any vocabulary, eager or
exported."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import Tensor

from distill.vocab import normalize_name

from ..data.resize import prepare_image
from ..export.exportable import check_embeddings
from ..export.runtime import ExportedDetector
from .checkpoint import load_checkpoint
from .encoder import VocabularyEncoder
from .inference_config import EXPORTED_SUFFIXES, load_inference_config
from .vocabulary import parse_vocabulary

__all__ = ["OVPredictor"]


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

    def __init__(
        self,
        cfg: CfgNode | str | os.PathLike,
        weights: str | os.PathLike,
        *,
        vocabulary: str | Sequence[str] | None = None,
        teacher: Callable[[], Any] | None = None,
        input_format: str = "RGB",
        cache: bool = True,
        opts: Sequence[str] = (),
        field: str = "vocabulary",
    ) -> None:
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise FileNotFoundError(f"weights {self.weights} do not exist")
        self.cfg = load_inference_config(cfg, weights=self.weights, opts=opts)
        self.encoder = VocabularyEncoder(self.cfg, teacher=teacher, cache=cache)
        self.input_format = input_format
        self.exported = None
        self.model = None
        if self.weights.suffix in EXPORTED_SUFFIXES:
            self.exported = ExportedDetector(self.weights)
            if self.exported.baked:
                raise ValueError(
                    f"{self.weights}: the vocabulary is baked in; OVPredictor needs an export made "
                    f"with --vocabulary input"
                )
            if self.exported.embed_dim != self.encoder.embed_dim:
                raise ValueError(
                    f"{self.weights}: vocabulary embedding size {self.exported.embed_dim} does not "
                    f"match the config's text embeddings ({self.encoder.embed_dim}, "
                    f"{self.cfg.MODEL.VILD.TEXT_EMBEDDINGS})"
                )
        else:
            self.model = build_model(self.cfg).eval()
            load_checkpoint(
                self.model, self.weights, text_embeddings=self.cfg.MODEL.VILD.TEXT_EMBEDDINGS
            )
        self.vocabulary: list[str] = []
        self.embeddings = torch.zeros(0, self.encoder.embed_dim)
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, field=field)
        else:
            self.set_vocabulary(self.encoder.table.names)

    def set_vocabulary(
        self,
        vocabulary: str | Sequence[str],
        embeddings: Tensor | None = None,
        *,
        field: str = "vocabulary",
    ) -> None:
        """Classify over ``vocabulary`` (names, ``"a,b"`` or ``@file``); ``embeddings [K, D]`` skip the teacher.
        ``field`` names the option in error messages."""
        names = parse_vocabulary(vocabulary, field=field)
        if embeddings is None:
            embeddings = self.encoder(names, field=field)
        check_embeddings(embeddings, self.encoder.embed_dim, source="OVPredictor.set_vocabulary")
        if embeddings.shape[0] != len(names):
            raise ValueError(
                f"OVPredictor.set_vocabulary: {len(names)} names but {embeddings.shape[0]} embeddings"
            )
        self.vocabulary, self.embeddings = names, embeddings.float()
        if self.model is not None:
            self.model.roi_heads.set_vocabulary(self.embeddings, names)

    def _exported_seen(self) -> list[bool]:
        """ViLD-ensemble's per-class weighting for an exported model: names its model card lists as trained on."""
        trained = self.exported.card.get("training_vocabulary", {}).get("trained_on")
        if trained is None:
            raise ValueError(
                f"{self.weights}: a ViLD-ensemble export needs training_vocabulary.trained_on in its "
                f"model card"
            )
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
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
        ):
            raise ValueError(
                f"OVPredictor: expected an [H, W, 3] uint8 image, got "
                f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}"
            )
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
        prepared = prepare_image(
            image,
            min_size=int(self.cfg.INPUT.MIN_SIZE_TEST),
            max_size=int(self.cfg.INPUT.MAX_SIZE_TEST),
        )
        with torch.no_grad():
            outputs = self.model([{"image": prepared.tensor, "height": height, "width": width}])
        return outputs[0]["instances"].to("cpu")
