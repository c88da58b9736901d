"""Text classifiers: prompt-ensembled class embeddings with an on-disk cache.

Each class (a name or a list of synonyms) becomes ``len(synonyms) * len(templates)`` prompts; every
prompt embedding is L2-normalized, the class embedding is their mean, renormalized (the ViLD / CLIP
zero-shot recipe). Results are cached under ``cache_dir("text_classifiers")`` keyed by the teacher
fingerprint, the templates and the names, so a 1203-class LVIS vocabulary is encoded once.

``space`` (``distill.text_encoder.TEXT_SPACES``) picks the text-tower output the prompts are
embedded in: ``"projected"`` (CLIP's joint space, ``teacher.encode_text``; the default) or
``"attn12"`` (BARON's OV-COCO classifier: the eot token after the last block, no final layer norm,
no projection; see ``distill.teachers.text_tower.encode_texts``). The cache key holds the space.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from distill.teachers.errors import TextTooLongError
from distill.teachers.templates import format_prompt, process_name, resolve_templates
from distill.teachers.text_tower import encode_texts
from distill.text_encoder import check_text_space
from distill.utils import atomic_path, cache_dir, sha256_json

if TYPE_CHECKING:
    from distill.teachers.base import ClassNames, Teacher

__all__ = [
    "normalize_class_names",
    "class_prompts",
    "compute_text_classifier",
    "text_classifier_cache_path",
    "read_cached_text_classifier",
    "cached_text_classifier",
    "text_classifier_in_space",
]

_CACHE_VERSION = 1
_log = logging.getLogger(__name__)


def normalize_class_names(names: ClassNames) -> list[list[str]]:
    """Each entry -> a non-empty list of synonyms (a plain string is one synonym)."""
    if isinstance(names, str):
        raise ValueError(f"names must be a sequence of class names, got the string {names!r}")
    out: list[list[str]] = []
    for i, entry in enumerate(names):
        synonyms = [entry] if isinstance(entry, str) else list(entry)
        if not synonyms or not all(isinstance(s, str) and s.strip() for s in synonyms):
            raise ValueError(
                f"class {i}: expected a non-empty name or list of non-empty synonyms, got {entry!r}"
            )
        out.append(synonyms)
    if not out:
        raise ValueError("empty class-name list")
    return out


def class_prompts(
    names: list[list[str]], templates: list[str]
) -> tuple[list[str], list[int], list[str]]:
    """All prompts, the class index of each, and the raw synonym each was made from."""
    prompts, owners, sources = [], [], []
    for i, synonyms in enumerate(names):
        for synonym in synonyms:
            cleaned = process_name(synonym)
            for template in templates:
                prompts.append(format_prompt(template, cleaned))
                owners.append(i)
                sources.append(synonym)
    return prompts, owners, sources


@torch.no_grad()
def compute_text_classifier(
    teacher: Teacher,
    names: list[list[str]],
    templates: list[str],
    *,
    batch_size: int = 1024,
    progress: bool | None = None,
    space: str = "projected",
) -> Tensor:
    """``[N, D]`` float32 normalized class embeddings on ``teacher.device`` (no cache), each prompt
    embedded in ``space``."""
    prompts, owners, sources = class_prompts(names, templates)
    unique = list(dict.fromkeys(prompts))
    index = {p: j for j, p in enumerate(unique)}
    show = len(unique) > 2048 if progress is None else progress
    chunks = []
    for start in tqdm(
        range(0, len(unique), batch_size), disable=not show, desc="text classifier", unit="batch"
    ):
        try:
            emb = encode_texts(teacher, unique[start : start + batch_size], space=space)
        except TextTooLongError as err:
            j = prompts.index(err.text)
            raise ValueError(
                f"class name {sources[j]!r} (class {owners[j]}) is too long for the text encoder: "
                f"prompt {err.text!r} takes {err.tokens} tokens > context length {err.limit}; "
                f"shorten the name (names are never truncated silently)"
            ) from err
        chunks.append(F.normalize(emb.float(), dim=-1))
    unique_emb = torch.cat(chunks)
    device = unique_emb.device
    rows = torch.tensor([index[p] for p in prompts], device=device)
    sums = torch.zeros(len(names), unique_emb.shape[1], device=device)
    sums.index_add_(0, torch.tensor(owners, device=device), unique_emb[rows])
    return F.normalize(sums, dim=-1)


def text_classifier_cache_path(
    fingerprint: str, names: list[list[str]], templates: list[str], *, space: str = "projected"
) -> Path:
    """Cache file of a (teacher, templates, names, space) tuple (projected: the old key)."""
    fields = {"version": _CACHE_VERSION, "teacher": fingerprint, "templates": templates}
    if check_text_space(space) != "projected":
        fields["space"] = space
    key = sha256_json({**fields, "names": names})
    return cache_dir("text_classifiers") / f"{key}.pt"


def _read_cache(path: Path, expected_rows: int) -> Tensor | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        _log.warning("ignoring unreadable text-classifier cache %s (%s); recomputing", path, err)
        return None
    emb = payload.get("embeddings") if isinstance(payload, dict) else None
    if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != expected_rows:
        _log.warning("ignoring malformed text-classifier cache %s; recomputing", path)
        return None
    return emb


def read_cached_text_classifier(
    fingerprint: str,
    names: ClassNames,
    *,
    templates: str | Sequence[str] = "vild",
    space: str = "projected",
) -> Tensor | None:
    """The cached ``[N, D]`` float32 CPU classifier of the teacher with ``fingerprint``, or None.

    No teacher is needed: callers that know the fingerprint (e.g. from a classifier file) skip
    building the teacher when every vocabulary they need was encoded before.
    """
    name_lists = normalize_class_names(names)
    path = text_classifier_cache_path(
        str(fingerprint), name_lists, resolve_templates(templates), space=space
    )
    if not path.is_file():
        return None
    emb = _read_cache(path, len(name_lists))
    return None if emb is None else emb.float()


def cached_text_classifier(
    teacher: Teacher,
    names: ClassNames,
    *,
    templates: str | Sequence[str] = "vild",
    cache: bool = True,
    batch_size: int = 1024,
    progress: bool | None = None,
    space: str = "projected",
) -> Tensor:
    """``teacher.text_classifier``: ``[N, D]`` normalized, read from / written to the disk cache."""
    name_lists = normalize_class_names(names)
    template_list = resolve_templates(templates)
    if cache:
        emb = read_cached_text_classifier(
            teacher.fingerprint, name_lists, templates=template_list, space=space
        )
        if emb is not None:
            return emb.to(teacher.device, torch.float32)
    path = (
        text_classifier_cache_path(teacher.fingerprint, name_lists, template_list, space=space)
        if cache
        else None
    )
    emb = compute_text_classifier(
        teacher, name_lists, template_list, batch_size=batch_size, progress=progress, space=space
    )
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "embeddings": emb.cpu(),
                    "teacher": teacher.fingerprint,
                    "templates": template_list,
                    "names": name_lists,
                    "space": space,
                },
                tmp,
            )
    return emb


def text_classifier_in_space(
    teacher: Teacher,
    names: ClassNames,
    *,
    templates: str | Sequence[str] = "vild",
    space: str = "projected",
    cache: bool = True,
) -> Tensor:
    """``teacher.text_classifier(names)`` in ``space``: the teacher's own method for
    ``"projected"`` (ensembles combine their members there), the cached text-tower path
    (:func:`cached_text_classifier`) otherwise."""
    if check_text_space(space) == "projected":
        return teacher.text_classifier(names, templates=templates, cache=cache)
    return cached_text_classifier(teacher, names, templates=templates, cache=cache, space=space)
