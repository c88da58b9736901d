"""Detectors' former names for the students' classifier file, :class:`distill.vocab.ClassifierFile`.

Aliases only, kept until the remaining call sites use ``ClassifierFile`` directly:
``TextEmbeddings`` is ``ClassifierFile``, ``load_text_embeddings`` is ``ClassifierFile.load`` and
``save_text_embeddings(path, names, embeddings, *, teacher_fingerprint)`` saves
``ClassifierFile.from_embeddings(...)`` (rows L2-normalized).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from distill.vocab import ClassifierFile

__all__ = ["TextEmbeddings", "load_text_embeddings", "save_text_embeddings"]

TextEmbeddings = ClassifierFile
load_text_embeddings = ClassifierFile.load


def save_text_embeddings(path: str | os.PathLike, names: Sequence[str], embeddings: Tensor, *,
                         teacher_fingerprint: str, synonyms: Sequence[Sequence[str]] | None = None,
                         provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``ClassifierFile.from_embeddings(names, embeddings [N, D], ...)`` atomically."""
    table = ClassifierFile.from_embeddings(names, embeddings,
                                           teacher_fingerprint=teacher_fingerprint,
                                           synonyms=synonyms, provenance=provenance,
                                           source=str(path))
    return table.save(path)
