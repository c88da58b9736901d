"""Building open_clip models for teachers: custom model configs, strict checkpoint loading, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from distill.utils import atomic_path, cache_dir, sha256_file, sha256_json, write_json_atomic

__all__ = [
    "LoadedModel",
    "register_model_config",
    "load_open_clip",
    "checkpoint_sha256",
    "state_dict_sha256",
]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
_REQUIRED_CFG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
_FILE_SHA: dict[tuple[str, int, int], str] = {}


@dataclass
class LoadedModel:
    """An open_clip model plus what identifies it."""

    model: nn.Module
    config: dict[str, Any]  # open_clip model config (embed_dim, vision_cfg, text_cfg, ...)
    weights: dict[
        str, str
    ]  # {"checkpoint_sha256": ...} | {"pretrained_tag": ...} | {"random_init_sha256": ...}
    preprocess: dict[str, Any] = field(default_factory=dict)


def register_model_config(
    model_name: str, model_config: str | os.PathLike | Mapping
) -> tuple[dict, dict | None]:
    """Make ``model_name`` known to open_clip with the given config (a JSON path or a dict).

    The JSON may be a bare open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) or an
    ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``). A canonical copy named
    ``<model_name>.json`` is written under ``cache_dir("model_configs", <sha>)`` and added with
    ``open_clip.add_model_config``. Returns ``(model_cfg, preprocess_cfg or None)``.

    Raises:
        FileNotFoundError: the JSON file does not exist.
        ValueError: invalid JSON / missing keys (naming the file), or ``model_name`` already names a
            different open_clip config.
    """
    if "/" in model_name or os.sep in model_name or not model_name:
        raise ValueError(
            f"model_name {model_name!r} for a custom model config must be a plain name"
        )
    source = "<dict>"
    if isinstance(model_config, Mapping):
        data = json.loads(json.dumps(dict(model_config)))
    else:
        source = str(model_config)
        path = Path(model_config)
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"model config {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"model config {source} must be a JSON object")
    preprocess = data.get("preprocess_cfg") if "model_cfg" in data else None
    cfg = data["model_cfg"] if "model_cfg" in data else data
    missing = [k for k in _REQUIRED_CFG_KEYS if k not in cfg]
    if missing:
        raise ValueError(
            f"model config {source} lacks required keys {missing} (needs {list(_REQUIRED_CFG_KEYS)})"
        )
    existing = open_clip.get_model_config(model_name)
    if existing is not None:
        if existing == cfg:
            return cfg, preprocess
        raise ValueError(
            f"model_name {model_name!r} already names a different open_clip model config; "
            f"choose another name for {source}"
        )
    target = cache_dir("model_configs", sha256_json(cfg)[:16]) / f"{model_name}.json"
    if not target.is_file():
        write_json_atomic(target, cfg, indent=2)
    open_clip.add_model_config(target)
    if (
        open_clip.get_model_config(model_name) != cfg
    ):  # pragma: no cover - open_clip registry semantics changed
        raise RuntimeError(f"open_clip did not register model config {target} as {model_name!r}")
    return cfg, preprocess


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file, cached per (absolute path, mtime, size) in memory and on disk."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    key = (str(resolved), st.st_mtime_ns, st.st_size)
    if key in _FILE_SHA:
        return _FILE_SHA[key]
    record = cache_dir("fingerprints") / f"{sha256_json(list(key))}.txt"
    digest = record.read_text(encoding="utf-8").strip() if record.is_file() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        digest = sha256_file(resolved)
        with atomic_path(record) as tmp:
            tmp.write_text(digest, encoding="utf-8")
    _FILE_SHA[key] = digest
    return digest


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes); identifies random-init weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith(_CHECKPOINT_SUFFIXES)


_LOAD_ERRORS = (RuntimeError, ValueError, OSError, EOFError, StopIteration, pickle.UnpicklingError)


def _checkpoint_mismatch(model_name: str, path: Path, kwargs: dict, err: Exception) -> ValueError:
    """Explain why ``path`` failed to load: key lists from a non-strict load into a fresh model."""
    model = open_clip.create_model(model_name, pretrained=None, **kwargs)
    try:
        incompatible = open_clip.load_checkpoint(model, str(path), strict=False)
    except _LOAD_ERRORS as err2:  # unreadable file, or shape mismatches (torch names the keys)
        return ValueError(f"checkpoint {path} does not fit open_clip model {model_name!r}: {err2}")
    missing = sorted(incompatible.missing_keys)
    unexpected = sorted(incompatible.unexpected_keys)
    if missing or unexpected:
        return ValueError(
            f"checkpoint {path} does not fit open_clip model {model_name!r}: "
            f"missing keys {missing}; unexpected keys {unexpected}"
        )
    return ValueError(
        f"checkpoint {path} could not be loaded into open_clip model {model_name!r}: {err}"
    )


def load_open_clip(
    model_name: str,
    *,
    pretrained: str | os.PathLike | None = None,
    model_config: str | os.PathLike | Mapping | None = None,
    device: str | torch.device = "cpu",
    allow_random_init: bool = False,
) -> LoadedModel:
    """Create an open_clip model and load its weights.

    Args:
        model_name: an open_clip architecture name, or the name to register ``model_config`` under.
        pretrained: an open_clip pretrained tag (downloads; needs network) or a local checkpoint file.
        model_config: open_clip model-config JSON (or dict) for a custom architecture.
        device: where the model lives.
        allow_random_init: permit ``pretrained=None`` (random weights; tests and benchmarks only).

    Raises:
        FileNotFoundError: a checkpoint path that does not exist.
        ValueError: no weights given, unknown tag, or a checkpoint that does not fit the architecture
            (naming the file and the missing / unexpected / mis-shaped keys).
    """
    preprocess = None
    if model_config is not None:
        cfg, preprocess = register_model_config(model_name, model_config)
    else:
        cfg = open_clip.get_model_config(model_name.replace("/", "-"))
        if cfg is None:
            raise ValueError(
                f"unknown open_clip model {model_name!r}; pass model_config=<json> for a custom "
                f"architecture (known: {len(open_clip.list_models())} models, e.g. ViT-B-32, RN50)"
            )
    kwargs: dict[str, Any] = {"device": device, "precision": "fp32"}
    if preprocess:
        kwargs["force_preprocess_cfg"] = preprocess
    pretrained = os.fspath(pretrained) if pretrained is not None else None
    if pretrained is None:
        if not allow_random_init:
            raise ValueError(
                f"no weights for teacher {model_name!r}: pass pretrained=<open_clip tag or checkpoint "
                f"path> (allow_random_init=True builds random weights, for tests only)"
            )
        model = open_clip.create_model(model_name, pretrained=None, **kwargs)
        weights = {"random_init_sha256": state_dict_sha256(model)}
    elif Path(pretrained).is_file():
        try:  # open_clip loads it strictly (with its format conversions)
            model = open_clip.create_model(model_name, pretrained=pretrained, **kwargs)
        except _LOAD_ERRORS as err:
            raise _checkpoint_mismatch(model_name, Path(pretrained), kwargs, err) from err
        weights = {"checkpoint_sha256": checkpoint_sha256(pretrained)}
    elif _looks_like_path(pretrained) or Path(pretrained).exists():
        raise FileNotFoundError(
            f"checkpoint file not found for teacher {model_name!r}: {pretrained}"
        )
    else:
        if not open_clip.get_pretrained_cfg(model_name.replace("/", "-"), pretrained):
            tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
            raise ValueError(
                f"{pretrained!r} is neither a checkpoint file nor an open_clip pretrained tag of "
                f"{model_name!r} (tags: {tags})"
            )
        model = open_clip.create_model(model_name, pretrained=pretrained, **kwargs)
        weights = {"pretrained_tag": pretrained}
    model.eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        config=cfg,
        weights=weights,
        preprocess=dict(open_clip.get_model_preprocess_cfg(model)),
    )
