"""``ExportedDetector``: running an exported ``model.ts`` / ``model.onnx`` with the checks of its
model card."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.resize import prepare_image, rescale_boxes
from .exportable import check_embeddings
from .model_card import CARD_JSON

__all__ = ["ExportedDetector"]


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
            raise FileNotFoundError(
                f"{self.path}: no {CARD_JSON} beside it (written by tools/export_model.py)"
            )
        try:
            self.card = json.loads(card_path.read_text(encoding="utf-8"))
            settings = self.card["export"]
            self.baked = settings["vocabulary"] == "baked"
            self.embed_dim = int(settings["embed_dim"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{card_path}: not a model card of tools/export_model.py ({err!r})"
            ) from err
        self.names = list(settings.get("names") or [])
        self.needs_seen = any(str(i).startswith("seen") for i in settings.get("inputs", []))
        self.settings = settings
        if self.path.suffix == ".onnx":
            import onnxruntime as ort  # lazy: only ONNX files need it (an optional dependency)

            options = ort.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = options.inter_op_num_threads = int(num_threads)
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
            self.module = None
        elif self.path.suffix in (".ts", ".pt"):
            self.module = torch.jit.load(str(self.path), map_location="cpu")
            self.session = None
        else:
            raise ValueError(
                f"{self.path}: unknown exported-model suffix {self.path.suffix!r} (expected .ts or .onnx)"
            )

    def __call__(
        self,
        image: Tensor | np.ndarray,
        text_embeddings: Tensor | np.ndarray | None = None,
        seen: Tensor | np.ndarray | Sequence[bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(
                f"{self.path}: image must be a [3, H, W] tensor (channels first, 0-255, "
                f"{self.settings.get('pixel_format', 'RGB')}), got {list(image.shape)}"
            )
        if self.baked and text_embeddings is not None:
            raise ValueError(
                f"{self.path}: the vocabulary is baked in ({len(self.names)} names); pass no embeddings "
                f"or export with --vocabulary input"
            )
        if not self.baked:
            if text_embeddings is None:
                raise ValueError(
                    f"{self.path}: this model takes the vocabulary as input: pass text_embeddings [K, "
                    f"{self.embed_dim}]"
                )
            text_embeddings = torch.as_tensor(text_embeddings, dtype=torch.float32)
            check_embeddings(text_embeddings, self.embed_dim, source=str(self.path))
        args: tuple[Tensor, ...] = (image,) if self.baked else (image, text_embeddings)
        if self.needs_seen:
            if seen is None:
                raise ValueError(
                    f"{self.path}: a ViLD-ensemble export needs seen [K] (bool, class trained on) with "
                    f"the embeddings"
                )
            seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
            if seen.numel() != text_embeddings.shape[0]:
                raise ValueError(
                    f"{self.path}: seen has {seen.numel()} entries for {text_embeddings.shape[0]} classes"
                )
            args = (*args, seen)
        elif seen is not None:
            raise ValueError(
                f"{self.path}: seen is only an input of ViLD-ensemble exports with an input vocabulary"
            )
        if self.session is not None:
            names = [i.name for i in self.session.get_inputs()]
            outputs = self.session.run(None, {n: a.numpy() for n, a in zip(names, args)})
        else:
            with torch.no_grad():
                outputs = [o.numpy() for o in self.module(*args)]
        boxes, scores, classes = outputs
        return boxes, scores, classes.astype(np.int64)

    def detect(
        self,
        image: np.ndarray,
        text_embeddings: Tensor | np.ndarray | None = None,
        seen: Tensor | np.ndarray | Sequence[bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections on an ``[H0, W0, 3]`` uint8 image in the model's channel order, boxes in its pixels."""
        low, high = self.settings["resize"]
        prepared = prepare_image(image, min_size=low, max_size=high)
        boxes, scores, classes = self(prepared.tensor, text_embeddings, seen)
        return rescale_boxes(boxes, prepared), scores, classes
