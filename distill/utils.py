"""Small shared helpers: the cache directory, atomic file writes, content hashes, file keys."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def cache_dir(*parts: str) -> Path:
    """ovdistill's cache root (``$OVDISTILL_CACHE`` or ``~/.cache/ovdistill``), joined with ``parts``."""
    root = os.environ.get("OVDISTILL_CACHE")
    base = (
        Path(root)
        if root
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovdistill"
    )
    return base.expanduser().joinpath(*parts)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``path`` atomically.

    Readers never see a partially written file, and an interrupted writer leaves only a
    ``*.part`` file that the next attempt overwrites.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically, with bytes that depend only on ``obj``.

    ``torch.save`` names the zip archive's root folder after the file it writes, so saving straight
    to :func:`atomic_path`'s pid-stamped temporary file made the bytes (and every fingerprint taken
    of them, e.g. the toy teacher's) differ between two builds of the same weights.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """Serialize ``obj`` as JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent), encoding="utf-8")


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-serializable object in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def file_key(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a file version for cache keys: resolved path, size and whole-second mtime."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}
