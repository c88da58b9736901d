"""The config of a trained detector for inference: files recorded beside its weights, then the
inference stage of ``detectors.prepare.prepare_resources``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from detectron2.config import CfgNode

from ..config import load_config
from ..export.model_card import CARD_JSON
from ..prepare import prepare_resources

__all__ = ["load_inference_config", "recorded_file"]

logger = logging.getLogger(__name__)

EXPORTED_SUFFIXES = (".ts", ".onnx")


def load_inference_config(
    config: str | os.PathLike | CfgNode,
    *,
    weights: str | os.PathLike | None = None,
    opts: Sequence[str] = (),
) -> CfgNode:
    """The resolved config to build a trained detector from (or to run its exported file).

    ``MODEL.VILD.TEXT_EMBEDDINGS`` (it fixes the embedding size and is the vocabulary's reference)
    and, for BARON's eager model, ``MODEL.BARON.TEXT_ENCODER`` (the checkpoint holds its weights,
    the file its shape) are taken, when not set, from the files recorded beside ``weights``
    (:func:`recorded_file`); then ``prepare_resources`` (stage ``inference``, or ``exported`` for
    ``.ts`` / ``.onnx`` weights) registers toy datasets, resolves the training vocabulary and
    computes what is still missing with the teacher.
    """
    cfg = config.clone() if isinstance(config, CfgNode) else load_config(config, opts)
    if isinstance(config, CfgNode) and opts:
        cfg.merge_from_list(list(opts))
    cfg.defrost()
    if cfg.MODEL.META_ARCHITECTURE not in ("ViLDRCNN", "BaronRCNN"):
        raise ValueError(
            f"open-vocabulary inference needs MODEL.META_ARCHITECTURE ViLDRCNN or "
            f"BaronRCNN, got {cfg.MODEL.META_ARCHITECTURE!r}"
        )
    exported = weights is not None and Path(weights).suffix in EXPORTED_SUFFIXES
    if weights is not None and not cfg.MODEL.VILD.TEXT_EMBEDDINGS:
        source, path = recorded_file(Path(weights), "VILD", "TEXT_EMBEDDINGS")
        if path:
            cfg.MODEL.VILD.TEXT_EMBEDDINGS = path
            logger.info("training classifier from %s: %s", source, path)
    baron = cfg.MODEL.META_ARCHITECTURE == "BaronRCNN"
    encoder_missing = not Path(cfg.MODEL.BARON.TEXT_ENCODER).is_file()
    if baron and not exported and weights is not None and encoder_missing:
        source, path = recorded_file(Path(weights), "BARON", "TEXT_ENCODER")
        if path:
            cfg.MODEL.BARON.TEXT_ENCODER = path
            logger.info("pseudo-word text encoder from %s: %s", source, path)
    return prepare_resources(cfg, stage="exported" if exported else "inference")


def recorded_file(weights: Path, group: str, key: str) -> tuple[Path | None, str]:
    """The file ``MODEL.<group>.<key>`` named when ``weights`` were made: the run's resolved ``config.yaml``
    (checkpoints) or, for the training classifier, the model card (exports); ``(None, "")`` if none exists
    on disk."""
    run_config, card = weights.with_name("config.yaml"), weights.with_name(CARD_JSON)
    path, source = "", None
    if card.is_file() and (group, key) == ("VILD", "TEXT_EMBEDDINGS"):
        path = str(
            json.loads(card.read_text(encoding="utf-8")).get("teacher", {}).get("text_embeddings")
            or ""
        )
        source = card
    elif run_config.is_file():
        path, source = str(load_config(run_config).MODEL[group][key]), run_config
    return (source, path) if path and Path(path).is_file() else (None, "")
