"""``VocabularyEncoder``: text embeddings of any class names in the space of a trained detector's
teacher."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from detectron2.config import CfgNode

from distill.teachers import TextTooLongError
from distill.utils import cache_dir, sha256_json
from distill.vocab import normalize_name

from ..data.vocabulary import read_classifier
from ..modeling.text_embeddings import load_text_embeddings, save_text_embeddings
from ..teacher import build_teacher_from_cfg
from .vocabulary import parse_vocabulary

__all__ = ["VocabularyEncoder"]


class VocabularyEncoder:
    """``encoder(names) -> [K, D]`` normalized text embeddings in the space of the model's teacher.

    Args:
        cfg: config with ``MODEL.VILD.TEACHER`` (how to build the teacher) and ``TEXT_EMBEDDINGS``
            (the training classifier: its names are served from it, its fingerprint is the reference).
        teacher: optional factory returning the teacher (default: ``build_teacher_from_cfg(cfg)``).
        cache: read/write ``$OVDISTILL_CACHE/vild/vocabulary``.
    """

    def __init__(self, cfg: CfgNode, *, teacher: Callable[[], Any] | None = None, cache: bool = True) -> None:
        self.table = read_classifier(cfg.MODEL.VILD.TEXT_EMBEDDINGS)
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
