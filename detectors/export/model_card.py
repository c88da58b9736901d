"""The model card of an exported detector: ``model_card.json`` (read by the runtime) and
``MODEL_CARD.md``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distill.utils import atomic_path, sha256_file, write_json_atomic

from ..data.vocabulary import read_classifier

__all__ = ["CARD_JSON", "CARD_MD", "describe_model", "write_model_card"]

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


def describe_model(
    cfg, weights: str | os.PathLike, *, config_file: str | None = None
) -> dict[str, Any]:
    """Model-card fields of a trained detector: teacher, training vocabulary, data, metrics, weights.

    Metrics are the run's ``ov_metrics.json`` beside ``weights`` when present.
    """
    names, seen = list(cfg.MODEL.VILD.CLASSES.NAMES), [bool(s) for s in cfg.MODEL.VILD.CLASSES.SEEN]
    if not names:
        raise ValueError(
            "describe_model: MODEL.VILD.CLASSES.NAMES is empty (resolve the config "
            "with detectors.predictor.load_inference_config)"
        )
    fingerprint = read_classifier(cfg.MODEL.VILD.TEXT_EMBEDDINGS).teacher_fingerprint
    weights = Path(weights)
    metrics_path = weights.with_name("ov_metrics.json")
    metrics = (
        json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
    )
    teacher = cfg.MODEL.VILD.TEACHER
    baron = cfg.MODEL.META_ARCHITECTURE == "BaronRCNN"
    if baron:
        method = "BARON-ensemble" if cfg.MODEL.VILD.ENSEMBLE else "BARON"
        test_temperature = float(cfg.MODEL.BARON.TEST_TEMPERATURE or cfg.MODEL.VILD.TEMPERATURE)
    else:
        vild = "ViLD" if cfg.MODEL.VILD.DISTILL.ENABLED else "ViLD-text"
        method = "ViLD-ensemble" if cfg.MODEL.VILD.ENSEMBLE else vild
        test_temperature = float(cfg.MODEL.VILD.TEMPERATURE)
    return {
        "model": {
            "method": method,
            "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
            "backbone": cfg.MODEL.BACKBONE.NAME,
            "weights": str(weights),
            "weights_sha256": sha256_file(weights),
            "config": config_file,
            "temperature": float(cfg.MODEL.VILD.TEMPERATURE),
            "test_temperature": test_temperature,
        },
        "teacher": {
            "name": teacher.NAME,
            "model_name": teacher.MODEL_NAME,
            "pretrained": teacher.PRETRAINED,
            "model_config": teacher.MODEL_CONFIG,
            "templates": teacher.TEMPLATES,
            "fingerprint": fingerprint,
            "text_embeddings": cfg.MODEL.VILD.TEXT_EMBEDDINGS,
        },
        "training_vocabulary": {
            "names": names,
            "trained_on": [n for n, s in zip(names, seen) if s],
            "not_trained_on": [n for n, s in zip(names, seen) if not s],
        },
        "data": {
            "train": list(cfg.DATASETS.TRAIN),
            "test": list(cfg.DATASETS.TEST),
            "distillation": {
                "enabled": bool(cfg.MODEL.VILD.DISTILL.ENABLED),
                "source": cfg.MODEL.VILD.DISTILL.SOURCE,
                "mode": cfg.MODEL.VILD.DISTILL.MODE,
            },
        },
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
            lines += [
                f"- **{k}**: {json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in value.items()
            ]
        else:
            lines.append(json.dumps(value) if not isinstance(value, str) else value)
        lines.append("")
    with atomic_path(out / CARD_MD) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return out / CARD_JSON
