"""``VocabularyEncoder``: text embeddings of any class names in the space of a trained detector's
teacher."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from detectron2.config import CfgNode
from torch import Tensor

from distill.teachers import TextTooLongError, read_cached_text_classifier
from distill.teachers.text import text_classifier_in_space
from distill.vocab import check_teacher_fingerprint, normalize_name

from ..data.vocabulary import read_classifier
from ..teacher import build_teacher_from_cfg
from .vocabulary import parse_vocabulary

__all__ = ["VocabularyEncoder"]

_FIX = (
    "this teacher is not the one the model was trained with, so its text embeddings would "
    "not match the detector: configure the training teacher"
)


class VocabularyEncoder:
    """``encoder(names) -> [K, D]`` normalized text embeddings in the space of the model's teacher.

    Names of the training classifier are served from it; others from the teacher's text-classifier
    cache (``distill.teachers.read_cached_text_classifier``, keyed by the classifier's fingerprint,
    so no teacher is built when every name was encoded before), else encoded by the teacher.

    Args:
        cfg: config with ``MODEL.VILD.TEACHER`` (how to build the teacher) and ``TEXT_EMBEDDINGS``
            (the training classifier: its names are served from it, its fingerprint is the reference).
        teacher: optional factory returning the teacher (default: ``build_teacher_from_cfg(cfg)``).
        cache: read/write the teacher's text-classifier cache
            (``$OVDISTILL_CACHE/text_classifiers``).
    """

    def __init__(
        self, cfg: CfgNode, *, teacher: Callable[[], Any] | None = None, cache: bool = True
    ) -> None:
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

    def teacher(self) -> Any:
        """The configured teacher, built once and checked against the classifier's fingerprint."""
        if self._teacher is None:
            teacher = (
                self._factory() if self._factory is not None else build_teacher_from_cfg(self._cfg)
            )
            self.teacher_loads += 1
            check_teacher_fingerprint(
                self.fingerprint,
                str(teacher.fingerprint),
                what="the configured teacher (MODEL.VILD.TEACHER)",
                source=f"text classifier {self.table.source}",
                fix=_FIX,
            )
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
            rows[[i for i, n in enumerate(names) if normalize_name(n) not in index]] = self._encode(
                missing, field
            )
        return rows

    def _encode(self, names: list[str], field: str) -> Tensor:
        """``[K, D]`` embeddings of ``names`` (none in the training classifier): cached, else
        encoded by the teacher (and cached)."""
        embeddings = (
            read_cached_text_classifier(
                self.fingerprint, names, templates=self.templates, space=self.table.text_space
            )
            if self.cache
            else None
        )
        if embeddings is None:
            teacher = self.teacher()
            try:
                embeddings = (
                    text_classifier_in_space(  # the training classifier's space (BARON: attn12)
                        teacher,
                        names,
                        templates=self.templates,
                        space=self.table.text_space,
                        cache=self.cache,
                    )
                    .float()
                    .cpu()
                )
            except ValueError as err:  # distill.teachers names the class and the prompt
                too_long = (err, err.__cause__)
                if not any(isinstance(e, TextTooLongError) for e in too_long):
                    raise
                raise ValueError(
                    f"{field}: a class name is too long for the teacher's text "
                    f"encoder (context length {teacher.context_length} tokens, prompt "
                    f"templates {self.templates!r}): {err}"
                ) from err
        if embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"{field}: the teacher's text embeddings have size {embeddings.shape[1]}, the model "
                f"expects {self.embed_dim} ({self.table.source})"
            )
        return embeddings
