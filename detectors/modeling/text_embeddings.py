"""The classifier file of open-vocabulary students: ``{names, embeddings [N, D], teacher_fingerprint}``.

Students never run a text encoder: ``tools/train_net.py`` computes this file once with the teacher
(``distill.teachers``) and the model reads rows of it by class name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from distill.utils import atomic_path
from distill.vocab import normalize_name

__all__ = ["TextEmbeddings", "load_text_embeddings", "save_text_embeddings"]


@dataclass(frozen=True)
class TextEmbeddings:
    """Class names with their L2-normalized text embeddings ``[N, D]`` and the teacher that made them."""

    names: list[str]
    embeddings: Tensor
    teacher_fingerprint: str
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.names):
            raise ValueError(f"text embeddings {self.source}: {len(self.names)} names but embeddings of shape "
                             f"{list(self.embeddings.shape)} (expected [{len(self.names)}, D])")
        if not torch.isfinite(self.embeddings).all():
            raise ValueError(f"text embeddings {self.source}: non-finite values")
        seen: dict[str, str] = {}
        for name in self.names:
            key = normalize_name(name)
            if key in seen:
                raise ValueError(f"text embeddings {self.source}: duplicate class name {name!r} "
                                 f"(same as {seen[key]!r} ignoring case/spaces)")
            seen[key] = name

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def select(self, names: Sequence[str]) -> Tensor:
        """``[len(names), D]`` rows for ``names`` (matched ignoring case/spaces); KeyError lists missing ones."""
        index = {normalize_name(n): i for i, n in enumerate(self.names)}
        missing = [n for n in names if normalize_name(n) not in index]
        if missing:
            raise KeyError(f"text embeddings {self.source} lack {len(missing)} class names: {missing[:10]}"
                           f"{' ...' if len(missing) > 10 else ''}; recompute the file for this vocabulary")
        rows = torch.tensor([index[normalize_name(n)] for n in names], dtype=torch.long)
        return self.embeddings.index_select(0, rows)


def load_text_embeddings(path: str | os.PathLike) -> TextEmbeddings:
    """Read and validate a classifier file (embeddings returned float32, L2-normalized)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text embeddings file {path} does not exist (MODEL.VILD.TEXT_EMBEDDINGS); "
                                f"tools/train_net.py computes it when MODEL.VILD.TEACHER is set")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or any(k not in data for k in ("names", "embeddings", "teacher_fingerprint")):
        raise ValueError(f"text embeddings file {path} must hold a dict with keys names, embeddings, "
                         f"teacher_fingerprint; got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    emb = torch.as_tensor(data["embeddings"]).float()
    return TextEmbeddings(list(data["names"]), F.normalize(emb, dim=-1), str(data["teacher_fingerprint"]), str(path))


def save_text_embeddings(path: str | os.PathLike, names: Sequence[str], embeddings: Tensor, *,
                         teacher_fingerprint: str) -> Path:
    """Validate and write a classifier file atomically; returns its path."""
    table = TextEmbeddings(list(names), embeddings.detach().float().cpu(), str(teacher_fingerprint), str(path))
    with atomic_path(path) as tmp:
        torch.save({"names": table.names, "embeddings": table.embeddings,
                    "teacher_fingerprint": table.teacher_fingerprint}, tmp)
    return Path(path)
