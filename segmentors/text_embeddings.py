"""Fixed text-embedding classifiers on disk: the file a text-classifier head loads.

File format (``torch.save`` of a dict, readable with ``weights_only=True``)::

    {"names": [name or [synonyms...], ...],      # one entry per text class, in label order
     "embeddings": Tensor[N, D] float32,         # L2-normalized rows
     "teacher_fingerprint": str,                 # ClipTeacher.fingerprint of the encoder that made them
     "templates": str | list[str]}               # prompt templates used

Heads never import open_clip: they only read this file. ``tools/train_seg.py`` writes it with the
config's teacher when it is missing or stale (see ``segmentors.runner.ensure_text_embedding_files``).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.utils import atomic_path

__all__ = ["TextEmbeddings", "load_text_embeddings", "save_text_embeddings", "canonical_names"]

_REQUIRED_KEYS = ("names", "embeddings", "teacher_fingerprint")


def canonical_names(names: Sequence[str | Sequence[str]]) -> list[str | list[str]]:
    """Names as plain JSON-like values (tuples -> lists) so stored and requested names compare equal."""
    if isinstance(names, str):
        raise ValueError(f"class names must be a sequence of names, got the string {names!r}")
    return [n if isinstance(n, str) else [str(s) for s in n] for n in names]


@dataclass(frozen=True)
class TextEmbeddings:
    """Contents of a text-embedding file: ``embeddings`` is ``[N, D]`` float32, L2-normalized."""

    path: Path
    names: list[str | list[str]]
    embeddings: Tensor
    teacher_fingerprint: str
    templates: Any = None


def save_text_embeddings(path: str | os.PathLike, *, names: Sequence[str | Sequence[str]], embeddings: Tensor,
                         teacher_fingerprint: str, templates: Any = None) -> Path:
    """Write a text-embedding file atomically (rows are L2-normalized here)."""
    names = canonical_names(names)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise ValueError(f"embeddings must be [{len(names)}, D] for {len(names)} names, got {tuple(embeddings.shape)}")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError(f"refusing to write non-finite text embeddings to {path}")
    payload = {"names": names, "embeddings": F.normalize(embeddings.detach().float().cpu(), dim=1),
               "teacher_fingerprint": str(teacher_fingerprint), "templates": templates}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_text_embeddings(path: str | os.PathLike, *, names: Sequence[str | Sequence[str]] | None = None,
                         teacher_fingerprint: str | None = None) -> TextEmbeddings:
    """Read and validate a text-embedding file.

    Args:
        path: the ``.pt`` file.
        names: if given, the stored names must equal these (same classes, same order).
        teacher_fingerprint: if given, the stored fingerprint must equal it.

    Raises:
        FileNotFoundError: no such file (the message says how to create it).
        ValueError: unreadable / malformed file, non-finite or non-normalized rows, or a names /
            fingerprint mismatch; every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text-embedding file not found: {path} (tools/train_seg.py computes it with the "
                                f"config's teacher; or write it with segmentors.text_embeddings.save_text_embeddings)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"cannot read text-embedding file {path}: {err}") from err
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED_KEYS):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"text-embedding file {path} must hold a dict with keys {list(_REQUIRED_KEYS)}, got {found}")
    emb = payload["embeddings"]
    stored = canonical_names(payload["names"])
    if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(stored) or emb.shape[0] == 0:
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise ValueError(f"text-embedding file {path}: 'embeddings' must be [N={len(stored)}, D] with N > 0, "
                         f"got {shape}")
    emb = emb.float()
    if not bool(torch.isfinite(emb).all()):
        raise ValueError(f"text-embedding file {path} holds non-finite values")
    norms = emb.norm(dim=1)
    if not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3)):
        worst = float((norms - 1).abs().max())
        raise ValueError(f"text-embedding file {path}: rows must be L2-normalized (max |norm - 1| = {worst:.3g})")
    if names is not None:
        wanted = canonical_names(names)
        if wanted != stored:
            diff = [(i, s, w) for i, (s, w) in enumerate(zip(stored, wanted)) if s != w][:3]
            raise ValueError(f"text-embedding file {path} holds {len(stored)} classes that do not match the "
                             f"{len(wanted)} requested (first differences (index, stored, requested): {diff}); "
                             f"delete it to recompute")
    fingerprint = str(payload["teacher_fingerprint"])
    if teacher_fingerprint is not None and fingerprint != teacher_fingerprint:
        raise ValueError(f"text-embedding file {path} was made by teacher {fingerprint[:12]}, not by the "
                         f"configured teacher {teacher_fingerprint[:12]}; delete it to recompute")
    return TextEmbeddings(path=path, names=stored, embeddings=emb, teacher_fingerprint=fingerprint,
                          templates=payload.get("templates"))

