"""``ClassifierFile``: the text classifier of open-vocabulary students, in memory and on disk.

Students never run a text encoder: the tools compute the classifier once with the teacher and the
model reads rows of it by class name (detectors) or in label order (segmentors).

On-disk format (``torch.save`` of a dict, readable with ``weights_only=True``)::

    {"format": "ovdistill.classifier", "version": 2,
     "names": [str, ...],                  # N display names (unique ignoring case/spaces)
     "synonyms": [[str, ...], ...],        # per class, the texts its row averages (name first)
     "embeddings": Tensor[N, D] float32,   # L2-normalized rows
     "teacher_fingerprint": str,           # fingerprint of the teacher that made them
     "provenance": {...}}                  # e.g. templates, teacher, created_by (free-form)

``provenance["text_space"]`` records the text-tower output the rows live in
(``distill.text_encoder.TEXT_SPACES``; absent = ``"projected"``, CLIP's joint space): BARON's
OV-COCO classifier is ``"attn12"``, and :meth:`ClassifierFile.check_text_space` keeps a model from
reading rows of another space.

Files of version 1 (no ``format`` key) load too: detectors' ``{names, embeddings,
teacher_fingerprint}`` (rows renormalized on load, as detectors did) and segmentors' ``{names (a
name or a synonym list per class), embeddings (normalized), teacher_fingerprint, templates}``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from distill.utils import atomic_path

from .fingerprint import DEFAULT_FIX, check_teacher_fingerprint
from .names import names_and_synonyms, normalize_name, validate_class_names

__all__ = ["ClassifierFile", "CLASSIFIER_FORMAT", "CLASSIFIER_VERSION", "TEXT_SPACE_KEY"]

CLASSIFIER_FORMAT = "ovdistill.classifier"
CLASSIFIER_VERSION = 2
REGENERATE = (
    "delete it and rerun the training tool, which recomputes it with the configured "
    "teacher (detectors: tools/train_net.py, MODEL.VILD.TEACHER; segmentors: "
    "tools/train_seg.py, the config's teacher), or write it with "
    "distill.vocab.ClassifierFile.save"
)
_LEGACY_KEYS = ("names", "embeddings", "teacher_fingerprint")
_KEYS = (
    "format",
    "version",
    "names",
    "synonyms",
    "embeddings",
    "teacher_fingerprint",
    "provenance",
)
_NORM_TOLERANCE = 1e-3
TEXT_SPACE_KEY = "text_space"
"""Provenance key of the text space of the rows (see the module docstring)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifierFile:
    """Class names with their L2-normalized text embeddings and the teacher that made them.

    Attributes:
        names: ``N`` display names (matched by :func:`distill.vocab.normalize_name`).
        embeddings: ``[N, D]`` L2-normalized rows (:meth:`from_embeddings` normalizes).
        teacher_fingerprint: the teacher's ``fingerprint``.
        synonyms: per class the texts averaged into its row (default: the name alone).
        provenance: free-form description (templates, teacher, created_by, ...).
        source: the file it was read from (or ``"<memory>"``); every message names it.

    Raises ``ValueError`` (naming ``source``) for empty/duplicate names, a shape mismatch,
    non-finite or non-normalized rows, or synonym lists that do not fit the names.
    """

    names: list[str]
    embeddings: Tensor
    teacher_fingerprint: str
    synonyms: list[list[str]] | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        where = f"text classifier {self.source}"
        names = validate_class_names(self.names, field=f"{where}: names")
        synonyms = (
            [[n] for n in names] if self.synonyms is None else [list(s) for s in self.synonyms]
        )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "synonyms", synonyms)
        object.__setattr__(self, "teacher_fingerprint", str(self.teacher_fingerprint))
        object.__setattr__(self, "provenance", dict(self.provenance))
        if len(synonyms) != len(names):
            raise ValueError(f"{where}: {len(names)} names but {len(synonyms)} synonym lists")
        bad = [
            i
            for i, syns in enumerate(synonyms)
            if not syns or not all(isinstance(s, str) and s.strip() for s in syns)
        ]
        if bad:
            raise ValueError(
                f"{where}: synonyms must be non-empty lists of non-empty strings (classes {bad})"
            )
        emb = self.embeddings
        if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(names):
            shape = list(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(
                f"{where}: {len(names)} names but embeddings of shape {shape} "
                f"(expected [{len(names)}, D])"
            )
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(f"{where}: non-finite values")
        worst = float((emb.float().norm(dim=1) - 1).abs().max())
        if worst > _NORM_TOLERANCE:
            raise ValueError(
                f"{where}: rows must be L2-normalized (max |norm - 1| = {worst:.3g}); "
                f"ClassifierFile.from_embeddings normalizes them"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(
        cls,
        names: Sequence[str],
        embeddings: Tensor,
        *,
        teacher_fingerprint: str,
        synonyms: Sequence[Sequence[str]] | None = None,
        provenance: Mapping[str, Any] | None = None,
        source: str = "<memory>",
    ) -> ClassifierFile:
        """A classifier of ``embeddings [N, D]`` of any scale (rows L2-normalized, float32, CPU)."""
        rows = F.normalize(embeddings.detach().float().cpu(), dim=-1)
        synonym_lists = None if synonyms is None else [list(s) for s in synonyms]
        return cls(
            list(names),
            rows,
            str(teacher_fingerprint),
            synonym_lists,
            dict(provenance or {}),
            source,
        )

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[str | Sequence[str]],
        embeddings: Tensor,
        *,
        teacher_fingerprint: str,
        provenance: Mapping[str, Any] | None = None,
        source: str = "<memory>",
    ) -> ClassifierFile:
        """:meth:`from_embeddings` for class entries: per class a name or synonyms (name first)."""
        names, synonyms = names_and_synonyms(entries, field=f"text classifier {source}: names")
        return cls.from_embeddings(
            names,
            embeddings,
            teacher_fingerprint=teacher_fingerprint,
            synonyms=synonyms,
            provenance=provenance,
            source=source,
        )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.names)

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def entries(self) -> list[str | list[str]]:
        """Per class its name, or its synonym list when that is more than the name alone."""
        return [
            name if syns == [name] else list(syns) for name, syns in zip(self.names, self.synonyms)
        ]

    def select(self, names: Sequence[str]) -> Tensor:
        """``[K, D]`` rows of ``names`` (matched ignoring case/spaces).

        Raises ``KeyError`` listing the names the file lacks.
        """
        index = {normalize_name(n): i for i, n in enumerate(self.names)}
        missing = [n for n in names if normalize_name(n) not in index]
        if missing:
            more = " ..." if len(missing) > 10 else ""
            raise KeyError(
                f"text classifier {self.source} lacks {len(missing)} class names: "
                f"{missing[:10]}{more}; recompute the file for this vocabulary"
            )
        rows = torch.tensor([index[normalize_name(n)] for n in names], dtype=torch.long)
        return self.embeddings.index_select(0, rows)

    def check_names(self, entries: Sequence[str | Sequence[str]]) -> None:
        """Raise ``ValueError`` unless the classes are ``entries`` (same synonyms, same order)."""
        names, synonyms = names_and_synonyms(entries, field="requested class names")
        stored, wanted = list(zip(self.names, self.synonyms)), list(zip(names, synonyms))
        if stored == wanted:
            return
        requested = [n if s == [n] else s for n, s in wanted]
        diff = [(i, s, w) for i, (s, w) in enumerate(zip(self.entries, requested)) if s != w][:3]
        raise ValueError(
            f"text classifier {self.source} holds {len(stored)} classes that do not "
            f"match the {len(wanted)} requested (first differences (index, stored, "
            f"requested): {diff}); delete it to recompute"
        )

    @property
    def text_space(self) -> str:
        """The space of the rows: ``provenance["text_space"]``, ``"projected"`` when absent."""
        return str(self.provenance.get(TEXT_SPACE_KEY, "projected"))

    def check_text_space(self, expected: str, *, source: str) -> None:
        """``ValueError`` unless the rows live in the ``expected`` space (wanted by ``source``)."""
        if self.text_space != expected:
            raise ValueError(
                f"text classifier {self.source} holds {self.text_space!r} text embeddings, "
                f"{source} needs {expected!r} ones; delete the file (or clear the config key) to "
                f"recompute it in that space"
            )

    def check_teacher(self, expected: str | None, *, source: str, fix: str = DEFAULT_FIX) -> None:
        """:func:`check_teacher_fingerprint` of this file against ``expected`` (from ``source``)."""
        check_teacher_fingerprint(
            expected,
            self.teacher_fingerprint,
            what=f"text classifier {self.source}",
            source=source,
            fix=fix,
        )

    # ------------------------------------------------------------------ disk
    def to_dict(self) -> dict[str, Any]:
        """The version-2 payload :meth:`save` writes."""
        return {
            "format": CLASSIFIER_FORMAT,
            "version": CLASSIFIER_VERSION,
            "names": list(self.names),
            "synonyms": [list(s) for s in self.synonyms],
            "embeddings": self.embeddings.detach().float().cpu().contiguous(),
            "teacher_fingerprint": self.teacher_fingerprint,
            "provenance": dict(self.provenance),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the version-2 file atomically (``*.part`` then rename); returns its path."""
        with atomic_path(path) as tmp:
            torch.save(self.to_dict(), tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassifierFile:
        """Read and validate a classifier file of any version (rows float32, L2-normalized).

        Raises:
            FileNotFoundError: no such file (the message says which tool computes it).
            ValueError: unreadable or malformed file, or contents the constructor rejects;
                every message names the file (and how to regenerate it).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"text classifier file {path} does not exist: the training "
                f"tools compute it (detectors: MODEL.VILD.TEXT_EMBEDDINGS, by "
                f"tools/train_net.py with MODEL.VILD.TEACHER; segmentors: a "
                f"head's text_embeddings, by tools/train_seg.py with the "
                f"config's teacher)"
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(
                f"cannot read text classifier file {path} ({err}); {REGENERATE}"
            ) from err
        if not isinstance(payload, dict):
            raise ValueError(
                f"text classifier file {path} holds a {type(payload).__name__}, not a "
                f"dict; {REGENERATE}"
            )
        if "format" in payload:
            return cls._from_payload(payload, path)
        return cls._from_legacy_payload(payload, path)

    @classmethod
    def _from_payload(cls, payload: dict, path: Path) -> ClassifierFile:
        if payload["format"] != CLASSIFIER_FORMAT or payload.get("version") != CLASSIFIER_VERSION:
            raise ValueError(
                f"text classifier file {path} has format {payload['format']!r} "
                f"version {payload.get('version')!r}; this code reads "
                f"{CLASSIFIER_FORMAT!r} version {CLASSIFIER_VERSION} (and version 1): "
                f"{REGENERATE}"
            )
        missing = [k for k in _KEYS if k not in payload]
        if missing:
            raise ValueError(f"text classifier file {path} lacks keys {missing}; {REGENERATE}")
        return cls(
            list(payload["names"]),
            _float_rows(payload["embeddings"], path),
            str(payload["teacher_fingerprint"]),
            [list(s) for s in payload["synonyms"]],
            dict(payload["provenance"]),
            str(path),
        )

    @classmethod
    def _from_legacy_payload(cls, payload: dict, path: Path) -> ClassifierFile:
        """Version 1: detectors' ``{names, embeddings, teacher_fingerprint}`` (renormalized) or
        segmentors' ``{names | synonym lists, embeddings, teacher_fingerprint, templates}``."""
        missing = [k for k in _LEGACY_KEYS if k not in payload]
        if missing:
            raise ValueError(
                f"text classifier file {path} must hold a dict with keys "
                f"{list(_KEYS)} (or, version 1, {list(_LEGACY_KEYS)}); got "
                f"{sorted(payload)}; {REGENERATE}"
            )
        names, synonyms = names_and_synonyms(
            payload["names"], field=f"text classifier {path}: names"
        )
        rows = _float_rows(payload["embeddings"], path)
        fingerprint = str(payload["teacher_fingerprint"])
        if "templates" in payload:  # segmentors' rows were normalized: used (and checked) as is
            return cls(
                names, rows, fingerprint, synonyms, {"templates": payload["templates"]}, str(path)
            )
        return cls(names, F.normalize(rows, dim=-1), fingerprint, synonyms, {}, str(path))


def _float_rows(embeddings: Any, path: Path) -> Tensor:
    if not isinstance(embeddings, Tensor):
        raise ValueError(
            f"text classifier file {path}: 'embeddings' is a "
            f"{type(embeddings).__name__}, not a tensor; {REGENERATE}"
        )
    return embeddings.float()
