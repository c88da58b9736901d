"""Build-once caches of the toy world and its teacher, safe against crashes, corruption and concurrency.

A cache entry is a directory that is complete iff its ``COMPLETE`` marker (written last, listing a sha256
for every file) exists and every listed file still has that checksum. Builds run in a sibling
``<name>.partial`` directory under an exclusive file lock and are renamed into place when done; a
missing marker, a changed or truncated file, or a missing file makes the entry rebuild.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..utils import cache_dir, sha256_file, sha256_json, write_json_atomic
from .teacher import TEACHER_VERSION, ToyTeacherConfig, load_toy_clip, train_toy_teacher
from .world import GENERATOR_VERSION, ToyWorld, ToyWorldConfig, generate_toy_world
from .zeroshot import evaluate_toy_teacher

COMPLETE = "COMPLETE"


def write_complete(root: Path, **extra: Any) -> None:
    """Write ``root/COMPLETE`` listing the sha256 of every other file under ``root`` (call it last)."""
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name != COMPLETE and not p.name.endswith(".part")
    )
    marker = {"files": {p.relative_to(root).as_posix(): sha256_file(p) for p in files}, **extra}
    write_json_atomic(root / COMPLETE, marker)


def verify_complete(root: Path) -> str | None:
    """``None`` if ``root`` is a complete, intact cache entry, else the reason it is not."""
    marker_path = root / COMPLETE
    if not marker_path.is_file():
        return f"{marker_path} missing"
    try:
        files = json.loads(marker_path.read_text(encoding="utf-8"))["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        return f"{marker_path} unreadable ({error})"
    for rel, digest in files.items():
        path = root / rel
        if not path.is_file():
            return f"{path} missing"
        if sha256_file(path) != digest:
            return f"{path} checksum mismatch"
    return None


@contextmanager
def _locked(final: Path) -> Iterator[None]:
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_cached(
    final: Path,
    build: Callable[[Path], dict[str, Any]],
    *,
    force: bool = False,
    resume: bool = False,
    accept: Callable[[Path], bool] = lambda _: True,
) -> Path:
    """Return ``final`` once it is complete, building it with ``build(partial_dir)`` if needed.

    ``build`` returns extra fields for the ``COMPLETE`` marker. ``resume`` keeps an interrupted
    ``.partial`` directory (for builders that checkpoint); ``accept`` may reject an intact entry that was
    built for different parameters.
    """
    final = Path(final)
    with _locked(final):
        if not force and verify_complete(final) is None and accept(final):
            return final
        partial = final.with_name(final.name + ".partial")
        if partial.exists() and not resume:
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        (partial / COMPLETE).unlink(missing_ok=True)
        extra = build(partial)
        write_complete(partial, **extra)
        if final.exists():
            stale = final.with_name(f"{final.name}.stale-{os.getpid()}")
            os.replace(final, stale)
            shutil.rmtree(stale)
        os.replace(partial, final)
    return final


def toy_world_dir(*, seed: int = 0, config: ToyWorldConfig | None = None) -> Path:
    """Default cache location of a toy world."""
    config = config or ToyWorldConfig()
    return cache_dir("toy", f"world-v{GENERATOR_VERSION}-seed{seed}-{config.key}")


def ensure_toy_world(
    *,
    seed: int = 0,
    root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    **size_overrides: Any,
) -> ToyWorld:
    """The toy world for ``seed`` and sizes (see :class:`ToyWorldConfig`), generated once and cached.

    ``root`` overrides the cache location (a world there with another seed/config is rebuilt).
    """
    config = ToyWorldConfig.from_overrides(**size_overrides)
    final = Path(root) if root is not None else toy_world_dir(seed=seed, config=config)

    def accept(path: Path) -> bool:
        manifest = ToyWorld.load(path).manifest
        return (
            manifest.get("generator_version") == GENERATOR_VERSION
            and manifest.get("seed") == seed
            and sha256_json(manifest.get("config")) == sha256_json(asdict(config))
        )

    def build(tmp: Path) -> dict[str, Any]:
        generate_toy_world(tmp, seed=seed, config=config, progress=progress)
        return {"kind": "toy-world", "seed": seed, "config": asdict(config)}

    return ToyWorld.load(build_cached(final, build, force=force, accept=accept))


@dataclass(frozen=True)
class ToyTeacherFiles:
    """A trained toy teacher on disk, in the form real CLIP weights take for open_clip."""

    model_config: Path  # open_clip model config JSON; its stem is ``model_name``
    checkpoint: Path  # state dict for open_clip.create_model(model_name, pretrained=checkpoint)
    model_name: str
    root: Path

    @property
    def info(self) -> dict[str, Any]:
        """``teacher.json``: config, training log, world fingerprint and the zero-shot metrics."""
        return json.loads((self.root / "teacher.json").read_text(encoding="utf-8"))

    def load(self, *, device: str = "cpu") -> tuple[Any, Any]:
        """``(open_clip model in eval mode, tokenizer)``."""
        model, tokenizer, _ = load_toy_clip(self.model_config, self.checkpoint, device=device)
        return model, tokenizer


def ensure_toy_teacher(
    world: ToyWorld,
    *,
    arch: str = "resnet",
    root: str | Path | None = None,
    force: bool = False,
    evaluate: bool = True,
    progress: bool = True,
    **overrides: Any,
) -> ToyTeacherFiles:
    """The tiny CLIP teacher trained on ``world``'s captions, trained once and cached.

    ``arch``: "resnet" (best crop accuracy) or "vit" (patch tokens for MaskCLIP / CLIP-ES; its image tower is
    trained against the locked text tower of the matching resnet teacher, which is ensured first and cached
    next to it). ``overrides`` change :class:`ToyTeacherConfig` fields. With ``evaluate`` the zero-shot table
    (:func:`distill.toy.zeroshot.evaluate_toy_teacher`) is computed at build time and stored in
    ``teacher.json``. Interrupted training resumes from its last finished epoch.
    """
    config = ToyTeacherConfig.from_overrides(arch=arch, **overrides)
    name = f"teacher-v{TEACHER_VERSION}-{arch}-{world.fingerprint[:10]}-{config.key}"
    final = Path(root) if root is not None else cache_dir("toy", name)
    source: ToyTeacherFiles | None = None
    if config.lock_text:
        text = config.text_source()
        source_root = None if root is None else final.with_name(final.name + "-text")
        source = ensure_toy_teacher(
            world,
            root=source_root,
            force=force,
            evaluate=evaluate,
            progress=progress,
            **{k: v for k, v in asdict(text).items() if k not in ("arch", "lock_text", "lr")},
        )

    def accept(path: Path) -> bool:
        info = json.loads((path / "teacher.json").read_text(encoding="utf-8"))
        return (
            info.get("world") == world.fingerprint
            and sha256_json(info.get("config")) == sha256_json(asdict(config))
            and info.get("text_source")
            == (None if source is None else sha256_file(source.checkpoint))
            and (not evaluate or "metrics" in info)
        )

    def build(tmp: Path) -> dict[str, Any]:
        log = train_toy_teacher(
            world,
            tmp,
            config=config,
            progress=progress,
            text_checkpoint=None if source is None else source.checkpoint,
        )
        info: dict[str, Any] = {
            "model_name": config.model_name,
            "version": TEACHER_VERSION,
            "world": world.fingerprint,
            "config": asdict(config),
            "train": log,
            "text_source": None if source is None else sha256_file(source.checkpoint),
        }
        if evaluate:
            model, tokenizer, _ = load_toy_clip(
                tmp / f"{config.model_name}.json", tmp / "checkpoint.pt"
            )
            info["metrics"] = evaluate_toy_teacher(model, tokenizer, world)
        write_json_atomic(tmp / "teacher.json", info, indent=1)
        return {"kind": "toy-teacher", "model_name": config.model_name}

    final = build_cached(final, build, force=force, resume=True, accept=accept)
    return ToyTeacherFiles(
        model_config=final / f"{config.model_name}.json",
        checkpoint=final / "checkpoint.pt",
        model_name=config.model_name,
        root=final,
    )


__all__ = [
    "COMPLETE",
    "ToyTeacherFiles",
    "build_cached",
    "ensure_toy_teacher",
    "ensure_toy_world",
    "toy_world_dir",
    "verify_complete",
    "write_complete",
]
