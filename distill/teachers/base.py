"""The teacher interface and the teacher registry (``TEACHERS``, ``register_teacher``, ``build_teacher``).

A teacher is a frozen ``nn.Module`` that maps text and image regions into one joint embedding space.
Subclasses set ``embed_dim`` and ``fingerprint`` and implement ``encode_text``, ``encode_images`` and
``region_embeddings``; ``text_classifier`` (prompt ensembles + on-disk cache) comes for free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from distill.teachers.errors import TextTooLongError
from distill.teachers.text import cached_text_classifier

__all__ = [
    "Teacher",
    "TextTooLongError",
    "TEACHERS",
    "register_teacher",
    "build_teacher",
    "ClassNames",
]

ClassNames = Sequence["str | Sequence[str]"]


class Teacher(nn.Module):
    """Frozen teacher; always in eval mode (``train()`` is a no-op), all outputs float32 and L2-normalized.

    Attributes:
        embed_dim: ``D``, the joint embedding size.
        fingerprint: stable id of architecture + weights; caches store it to detect teacher mismatches.
        context_length: the text encoder's maximum number of tokens (``None`` if unlimited/unknown).
    """

    embed_dim: int
    fingerprint: str
    context_length: int | None = None

    def train(self, mode: bool = True) -> Teacher:  # noqa: ARG002 - teachers stay frozen
        """Teachers never leave eval mode (BatchNorm statistics and dropout stay frozen)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """The device outputs are returned on: that of the first parameter/buffer (CPU if none)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """``[N, D]`` normalized text embeddings; raises ``TextTooLongError`` for a text that does not fit."""
        raise NotImplementedError

    def encode_images(self, images: Tensor) -> Tensor:
        """``[N, D]`` normalized embeddings of uint8 RGB images ``[N, 3, S, S]``."""
        raise NotImplementedError

    def region_embeddings(
        self, images: Sequence[Tensor], boxes: Sequence[Tensor], **kwargs
    ) -> list[Tensor]:
        """Per image ``[K_i, D]`` normalized embeddings of the ``[K_i, 4]`` xyxy boxes."""
        raise NotImplementedError

    def dense_embeddings(self, images: Tensor) -> Tensor:
        """``[B, D, h, w]`` dense (not normalized) embeddings; only some teachers have them."""
        raise NotImplementedError(f"{type(self).__name__} has no dense embeddings")

    def text_classifier(
        self,
        names: ClassNames,
        *,
        templates: str | Sequence[str] = "vild",
        cache: bool = True,
        batch_size: int = 1024,
        progress: bool | None = None,
    ) -> Tensor:
        """``[N, D]`` normalized class embeddings averaged over prompt templates (and synonyms).

        Args:
            names: one entry per class: a name, or a sequence of synonyms (averaged).
            templates: a ``PROMPT_TEMPLATES`` key ("vild", "maskclip", "simple") or a list of templates.
            cache: read/write ``cache_dir("text_classifiers")`` keyed by fingerprint, templates and names.
            batch_size: prompts per text-encoder call.
            progress: tqdm bar (default: only for more than 2048 prompts).
        """
        return cached_text_classifier(
            self, names, templates=templates, cache=cache, batch_size=batch_size, progress=progress
        )


T = TypeVar("T", bound=type)

TEACHERS: dict[str, type[Teacher]] = {}


def register_teacher(name: str) -> Callable[[T], T]:
    """Class decorator registering a teacher class under ``name`` (re-registering the same class is a no-op)."""

    def decorator(cls: T) -> T:
        previous = TEACHERS.get(name)
        if previous is not None and _qualname(previous) != _qualname(cls):
            raise ValueError(
                f"teacher name {name!r} is already registered to {_qualname(previous)}"
            )
        TEACHERS[name] = cls
        return cls

    return decorator


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def build_teacher(name: str, **kwargs) -> Teacher:
    """Instantiate the teacher registered as ``name`` with ``kwargs``."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; registered teachers: {sorted(TEACHERS)}")
    return TEACHERS[name](**kwargs)
