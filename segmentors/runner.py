"""What ``tools/train_seg.py`` / ``tools/test_seg.py`` do to a config before mmengine's Runner sees it.

1. ``work_dir``: ``--work-dir`` > the config's ``work_dir`` > ``./work_dirs/<config name>``.
2. Placeholders: every string in the config is scanned for ``<work_dir>`` and, when the config says
   ``toy_world=True`` (or a dict of options), for the toy-world tokens: ``<toy_world>`` (world root),
   ``<toy_teacher_model>``, ``<toy_teacher_config>``, ``<toy_teacher_checkpoint>``. The world and its
   teacher come from ``distill.toy.ensure_toy_world()`` / ``ensure_toy_teacher()`` (built once, cached).
   ``toy_world`` options: ``dict(seed=0, arch='resnet', root=None, sizes=dict(...), teacher=dict(...),
   teacher_root=None)`` (``sizes``: ``ToyWorldConfig`` fields; ``teacher``: ``ToyTeacherConfig`` fields).
3. Text-embedding files: every model sub-config with ``text_embeddings='path.pt'`` and ``class_names``
   gets its classifier file (``distill.vocab.ClassifierFile``) computed with the config's
   ``teacher`` (prompt templates ``text_templates``; through the teacher's text-classifier disk
   cache) when it is missing, names other classes, or was made by another teacher or with other
   templates.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mmengine.config import Config

from distill.teachers import TeacherSpec, build_teacher_from_spec
from distill.toy import ensure_toy_teacher, ensure_toy_world
from distill.vocab import ClassifierFile

__all__ = [
    "prepare_config",
    "fill_placeholders",
    "toy_placeholders",
    "text_embedding_specs",
    "ensure_text_embedding_files",
]

_log = logging.getLogger(__name__)
TOY_TOKENS = (
    "<toy_world>",
    "<toy_teacher_model>",
    "<toy_teacher_config>",
    "<toy_teacher_checkpoint>",
)


def _walk_strings(node: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, Mapping):
        for key in list(node.keys()):
            node[key] = _walk_strings(node[key], fn)
        return node
    if isinstance(node, list):
        return [_walk_strings(v, fn) for v in node]
    if isinstance(node, tuple):
        return tuple(_walk_strings(v, fn) for v in node)
    return node


def fill_placeholders(cfg: Config | dict, values: Mapping[str, str]) -> None:
    """Replace every occurrence of each token of ``values`` in every string of ``cfg`` (in place)."""

    def replace(text: str) -> str:
        for token, value in values.items():
            text = text.replace(token, str(value))
        return text

    for key in list(cfg.keys()):
        cfg[key] = _walk_strings(cfg[key], replace)


def _unfilled(cfg: Mapping, tokens: tuple[str, ...]) -> list[str]:
    found: set[str] = set()

    def visit(text: str) -> str:
        found.update(t for t in tokens if t in text)
        return text

    _walk_strings(copy.deepcopy(dict(cfg)), visit)
    return sorted(found)


def toy_placeholders(options: Any) -> dict[str, str]:
    """Build (or reuse) the toy world and its teacher; return the toy placeholder values."""
    opts = dict(options) if isinstance(options, Mapping) else {}
    known = {"seed", "arch", "root", "sizes", "teacher", "teacher_root"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown toy_world option(s) {unknown}; known: {sorted(known)}")
    world = ensure_toy_world(
        seed=int(opts.get("seed", 0)), root=opts.get("root"), **dict(opts.get("sizes") or {})
    )
    files = ensure_toy_teacher(
        world,
        arch=opts.get("arch", "resnet"),
        root=opts.get("teacher_root"),
        **dict(opts.get("teacher") or {}),
    )
    return {
        "<toy_world>": str(world.root),
        "<toy_teacher_model>": str(files.model_name),
        "<toy_teacher_config>": str(files.model_config),
        "<toy_teacher_checkpoint>": str(files.checkpoint),
    }


def text_embedding_specs(node: Any, prefix: str = "model") -> Iterator[tuple[str, Mapping]]:
    """``(config key path, sub-config)`` of every dict with a string ``text_embeddings`` entry."""
    if isinstance(node, Mapping):
        if isinstance(node.get("text_embeddings"), str):
            yield prefix, node
        for key, value in node.items():
            yield from text_embedding_specs(value, f"{prefix}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from text_embedding_specs(value, f"{prefix}[{i}]")


def ensure_text_embedding_files(cfg: Config | Mapping, *, device: str = "cpu") -> list[Path]:
    """Create or refresh the text-embedding file of every text-classifier head in ``cfg.model``."""
    specs = list(text_embedding_specs(cfg.get("model", {})))
    if not specs:
        return []
    teacher_cfg = cfg.get("teacher")
    if teacher_cfg is None:
        raise ValueError(
            f"{specs[0][0]} needs text embeddings but the config has no top-level 'teacher' to "
            f"compute them with"
        )
    templates = cfg.get("text_templates", "maskclip")
    recorded = templates if isinstance(templates, str) else [str(t) for t in templates]
    teacher_spec = TeacherSpec.from_mapping(teacher_cfg, origin="teacher", device=device)
    teacher = build_teacher_from_spec(teacher_spec)
    written = []
    for where, head_cfg in specs:
        path = Path(head_cfg["text_embeddings"])
        names = head_cfg.get("class_names")
        if names is None:
            raise ValueError(
                f"{where}: class_names is required next to text_embeddings={str(path)!r}"
            )
        if path.is_file():
            try:
                stored = ClassifierFile.load(path)
                stored.check_names(names)
                stored.check_teacher(
                    teacher.fingerprint,
                    fix="the file is recomputed",
                    source=f"the config's teacher ({teacher_spec.describe()})",
                )
                if stored.provenance.get("templates") != recorded:
                    raise ValueError(
                        f"{path} was made with prompt templates "
                        f"{stored.provenance.get('templates')!r}, the config's text_templates "
                        f"are {recorded!r}"
                    )
                continue
            except ValueError as err:
                _log.warning("recomputing %s: %s", path, err)
        embeddings = teacher.text_classifier(list(names), templates=templates)
        provenance = {
            "templates": recorded,
            "teacher": teacher_spec.describe(),
            "created_by": "segmentors.runner",
        }
        ClassifierFile.from_entries(
            names,
            embeddings,
            teacher_fingerprint=teacher.fingerprint,
            provenance=provenance,
            source=str(path),
        ).save(path)
        written.append(path)
    return written


def prepare_config(
    cfg: Config,
    *,
    config_path: str | os.PathLike,
    work_dir: str | None = None,
    text_embeddings: bool = True,
    device: str = "cpu",
) -> Config:
    """Steps 1-3 of the module docstring, in place; returns ``cfg``."""
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config_path).stem)
    values = {"<work_dir>": str(Path(cfg.work_dir).resolve())}
    toy = cfg.get("toy_world", False)
    if toy:
        values.update(toy_placeholders(toy))
    fill_placeholders(cfg, values)
    left = _unfilled(cfg, TOY_TOKENS)
    if left:
        raise ValueError(
            f"config {config_path} still contains {left}: set toy_world=True (or pass the values "
            f"with --cfg-options)"
        )
    if text_embeddings:
        ensure_text_embedding_files(cfg, device=device)
    return cfg
