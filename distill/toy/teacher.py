"""Train the toy world's tiny CLIP teacher with open_clip (custom model config + ClipLoss + AdamW).

The result is exactly what real CLIP weights look like to the rest of ovdistill: an open_clip model-config
JSON (registered with ``open_clip.add_model_config``; its file stem is the model name) and a state-dict
checkpoint loadable with ``open_clip.create_model(model_name, pretrained=checkpoint)``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..teachers.loading import load_open_clip
from ..teachers.loading import register_model_config as register_open_clip_config
from ..utils import atomic_path, sha256_file, sha256_json, torch_save_atomic
from .world import ToyWorld

TEACHER_VERSION = 3  # 3: dense zero-shot of ResNet teachers at output stride 16


_DEFAULT_LR = {"resnet": 4e-3, "vit": 2e-3}


@dataclass(frozen=True)
class ToyTeacherConfig:
    """Architecture and training recipe of the toy teacher.

    Defaults (chosen by measurement, see the package docs): a ModifiedResNet image tower on 32 px inputs
    and a 2-layer, 64-wide text transformer (context 16), ~1150 AdamW steps of 128 pairs. The "vit" arch
    (patch 8, mean-pooled tokens) trains its image tower against the LOCKED text tower of the resnet teacher
    with the same text config (``lock_text``, LiT-style): from scratch a ViT learns too slowly on CPU.
    ``lr`` / ``lock_text`` left ``None`` resolve per arch.
    """

    arch: str = "resnet"  # "resnet" | "vit"
    embed_dim: int = 128
    image_size: int = 32
    vit_width: int = 128
    vit_layers: int = 4
    vit_head_width: int = 32
    patch_size: int = 8
    vit_pool: str = "avg"  # open_clip pool_type: "avg" (mean of patch tokens) | "tok" (class token)
    resnet_layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    resnet_width: int = 16
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 16
    lock_text: bool | None = None  # None: True for "vit", False for "resnet"
    epochs: int = 25
    batch_size: int = 128
    lr: float | None = None  # None: per-arch default
    weight_decay: float = 0.1
    warmup_fraction: float = 0.03
    max_captions: int | None = None  # train on the first N captions only (tests, smoke runs)
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ("vit", "resnet"):
            raise ValueError(f"ToyTeacherConfig.arch must be 'vit' or 'resnet', got {self.arch!r}")
        if self.arch == "vit" and self.image_size % self.patch_size:
            raise ValueError(
                f"ToyTeacherConfig: image_size {self.image_size} not a multiple of "
                f"patch_size {self.patch_size}"
            )
        if self.arch == "resnet" and self.image_size % 32:
            raise ValueError(
                f"ToyTeacherConfig: a resnet needs image_size divisible by 32, got {self.image_size}"
            )
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("ToyTeacherConfig needs epochs >= 1 and batch_size >= 2")
        if self.lock_text is None:
            object.__setattr__(self, "lock_text", self.arch == "vit")
        if self.lock_text and self.arch == "resnet":
            raise ValueError(
                "ToyTeacherConfig: lock_text is for the vit arch (its text tower comes from a resnet)"
            )
        if self.lr is None:
            object.__setattr__(self, "lr", _DEFAULT_LR[self.arch])
        object.__setattr__(self, "resnet_layers", tuple(self.resnet_layers))

    @classmethod
    def from_overrides(cls, **overrides: Any) -> ToyTeacherConfig:
        """Build from keyword overrides, rejecting unknown names with a clear error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown toy-teacher option(s) {unknown}; known: {sorted(known)}")
        return cls(**overrides)

    def text_source(self) -> ToyTeacherConfig:
        """The resnet teacher whose text tower a ``lock_text`` vit reuses (same text config and recipe)."""
        shared = (
            "embed_dim",
            "image_size",
            "resnet_layers",
            "resnet_width",
            "text_width",
            "text_layers",
            "text_heads",
            "context_length",
            "epochs",
            "batch_size",
            "weight_decay",
            "warmup_fraction",
            "max_captions",
            "threads",
            "seed",
        )
        return ToyTeacherConfig(arch="resnet", **{name: getattr(self, name) for name in shared})

    def model_config(self) -> dict[str, Any]:
        """The open_clip model config ({"embed_dim", "vision_cfg", "text_cfg"})."""
        if self.arch == "vit":
            vision: dict[str, Any] = {
                "image_size": self.image_size,
                "layers": self.vit_layers,
                "width": self.vit_width,
                "head_width": self.vit_head_width,
                "patch_size": self.patch_size,
            }
            if self.vit_pool != "tok":
                vision["pool_type"] = self.vit_pool
        else:
            vision = {
                "image_size": self.image_size,
                "layers": list(self.resnet_layers),
                "width": self.resnet_width,
                "patch_size": None,
            }
        text = {
            "context_length": self.context_length,
            "vocab_size": 49408,
            "width": self.text_width,
            "heads": self.text_heads,
            "layers": self.text_layers,
        }
        return {"embed_dim": self.embed_dim, "vision_cfg": vision, "text_cfg": text}

    @property
    def model_name(self) -> str:
        """open_clip model name: unique per architecture so different toy configs never collide."""
        return f"ovd-toy-{self.arch}-{sha256_json(self.model_config())[:8]}"

    @property
    def key(self) -> str:
        """Short stable hash of the whole config (part of the cache directory name)."""
        return sha256_json(asdict(self))[:10]


def register_model_config(path: str | Path) -> str:
    """Register an open_clip model-config JSON under its file stem, as teachers register custom
    configs (``distill.teachers.loading.register_model_config``); returns the model name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"open_clip model config not found: {path}")
    register_open_clip_config(path.stem, path)
    return path.stem


def load_caption_corpus(
    world: ToyWorld, *, limit: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """All caption images as uint8 [N, 3, s, s] plus their captions (first ``limit`` if given)."""
    lines = world.captions.read_text(encoding="utf-8").splitlines()[:limit]
    images, captions = [], []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            path = world.captions.parent / record["image"]
            captions.append(str(record["caption"]))
        except (json.JSONDecodeError, KeyError) as error:
            raise ValueError(f"{world.captions}:{number}: bad caption record ({error})") from error
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB")))
    if not images:
        raise ValueError(f"{world.captions}: no captions")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), captions


def normalize_images(images: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """uint8 (or 0..255 float) [N, 3, H, W] -> float normalized with the model's preprocess mean/std."""
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32).view(
        1, 3, 1, 1
    )
    std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32).view(
        1, 3, 1, 1
    )
    return (images.float() / 255.0 - mean) / std


def augment(
    images: torch.Tensor, generator: torch.Generator, *, out_size: int, max_rotation: float = 15.0
) -> torch.Tensor:
    """Random rotation (+-``max_rotation`` degrees), zoom (resized crop), aspect change, shift and brightness.

    ``images``: uint8 [B, 3, H, W] -> float [B, 3, out_size, out_size] in 0..255. Colours are kept (they are
    named in the captions).
    """
    b = images.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_rotation)
    zoom = 0.75 + torch.rand(b, generator=generator) * 0.45
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * 0.12
    aspect = torch.exp(
        (torch.rand(b, generator=generator) * 2 - 1) * 0.3
    )  # ViLD crops distort aspect
    zoom_x, zoom_y = zoom * aspect.sqrt(), zoom / aspect.sqrt()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * zoom_x, -sin * zoom_y, shift[:, 0]], 1),
            torch.stack([sin * zoom_x, cos * zoom_y, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
    out = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    brightness = 0.85 + torch.rand(b, 1, 1, 1, generator=generator) * 0.3
    return (out * brightness).clamp(0, 255)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = (
            param.ndim < 2
            or "bn" in name
            or "ln" in name
            or "bias" in name
            or "logit_scale" in name
        )
        (no_decay if exclude else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def _adamw(groups: list[dict[str, Any]], *, lr: float) -> torch.optim.Optimizer:
    """AdamW, fused where this torch supports it on the device (10x faster steps on CPU)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, ValueError):  # fused kernels unavailable for this device/torch
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)


def train_toy_teacher(
    world: ToyWorld,
    out_dir: str | Path,
    *,
    config: ToyTeacherConfig | None = None,
    text_checkpoint: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the teacher on ``world``'s caption corpus with ``open_clip.loss.ClipLoss`` and write it to ``out_dir``.

    Writes ``<model_name>.json`` (open_clip config) and ``checkpoint.pt`` (state dict); returns a training log.
    With ``config.lock_text`` the text tower (and initial logit scale) is loaded from ``text_checkpoint`` (a
    teacher with the same text config) and frozen; only the image tower and the logit scale learn.
    Resumable: ``train_state.pt``, saved after every epoch in ``out_dir``, is picked up by a rerun with the
    same config, world and text checkpoint.
    """
    config = config or ToyTeacherConfig()
    if config.lock_text and text_checkpoint is None:
        raise ValueError(f"toy teacher {config.arch} with lock_text=True needs a text_checkpoint")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(
            world,
            out_dir,
            config,
            None if text_checkpoint is None else Path(text_checkpoint),
            progress,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _lock_text_tower(model: torch.nn.Module, checkpoint: Path) -> None:
    """Copy every non-visual tensor of ``checkpoint`` into ``model`` and freeze it (logit scale stays trainable)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"toy teacher text checkpoint not found: {checkpoint}")
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = model.state_dict()
    text = {k: v for k, v in own.items() if not k.startswith("visual.")}
    for key, value in text.items():
        if key not in source or source[key].shape != value.shape:
            raise ValueError(
                f"{checkpoint}: text tensor {key!r} missing or shaped "
                f"{tuple(source[key].shape) if key in source else None}, expected {tuple(value.shape)}"
            )
    model.load_state_dict({**own, **{k: source[k] for k in text}})
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("visual.") or name == "logit_scale"


def _cosine_schedule(
    optimizer: torch.optim.Optimizer, *, total: int, warmup: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train(
    world: ToyWorld,
    out_dir: Path,
    config: ToyTeacherConfig,
    text_checkpoint: Path | None,
    progress: bool,
) -> dict[str, Any]:
    start = time.perf_counter()
    config_path = out_dir / f"{config.model_name}.json"
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(config.model_config(), indent=2), encoding="utf-8")
    name = register_model_config(config_path)
    torch.manual_seed(config.seed)
    model = open_clip.create_model(name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(name)
    images, captions = load_caption_corpus(world, limit=config.max_captions)
    unique = sorted(set(captions))
    position = {caption: i for i, caption in enumerate(unique)}
    caption_index = torch.tensor([position[caption] for caption in captions])
    tokens = tokenizer(unique)
    locked_text = None
    if config.lock_text:
        assert text_checkpoint is not None
        _lock_text_tower(model, text_checkpoint)
        with torch.no_grad():
            locked_text = model.encode_text(tokens, normalize=True)
    model.train()
    n = images.shape[0]
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total = steps_per_epoch * config.epochs
    optimizer = _adamw(_param_groups(model, config.weight_decay), lr=float(config.lr))
    schedule = _cosine_schedule(
        optimizer, total=total, warmup=max(1, int(config.warmup_fraction * total))
    )
    loss_fn = open_clip.loss.ClipLoss()
    identity = {
        "world": world.fingerprint,
        "config": asdict(config),
        "version": TEACHER_VERSION,
        "text_checkpoint": None if text_checkpoint is None else sha256_file(text_checkpoint),
    }
    state_path, first_epoch, log = out_dir / "train_state.pt", 0, {"loss": []}
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("identity") == identity:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            first_epoch, log = state["epoch"], state["log"]
    generator = torch.Generator()
    for epoch in range(first_epoch, config.epochs):
        generator.manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=generator)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"toy teacher ({config.arch}) epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            idx = order[step * batch : (step + 1) * batch]
            views = augment(images[idx], generator, out_size=images.shape[-1])
            if views.shape[-1] != config.image_size:
                views = F.interpolate(
                    views,
                    size=(config.image_size, config.image_size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
            image_features = model.encode_image(normalize_images(views, model), normalize=True)
            rows = caption_index[idx]
            text_features = (
                locked_text[rows]
                if locked_text is not None
                else model.encode_text(tokens[rows], normalize=True)
            )
            loss = loss_fn(image_features, text_features, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            value = float(loss.detach())
            log["loss"].append(round(value, 4))
            bar.set_postfix(loss=f"{value:.3f}")
        with atomic_path(state_path) as tmp:
            torch.save(
                {
                    "identity": identity,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "epoch": epoch + 1,
                    "log": log,
                },
                tmp,
            )
    torch_save_atomic(model.state_dict(), out_dir / "checkpoint.pt")
    state_path.unlink(missing_ok=True)
    log.update(
        model_name=name,
        steps=total,
        batch_size=batch,
        captions=n,
        unique_captions=len(unique),
        train_seconds=round(time.perf_counter() - start, 1),
        lock_text=bool(config.lock_text),
        parameters=sum(p.numel() for p in model.parameters()),
        vision_parameters=sum(p.numel() for p in model.visual.parameters()),
    )
    return log


def load_toy_clip(
    model_config: str | Path, checkpoint: str | Path, *, device: str = "cpu"
) -> tuple[torch.nn.Module, Any, str]:
    """Load a toy teacher the way teachers load CLIP weights (strict checkpoint loading by
    ``distill.teachers.loading.load_open_clip``): ``(model.eval(), tokenizer, model_name)``."""
    name = register_model_config(model_config)
    loaded = load_open_clip(name, pretrained=checkpoint, model_config=model_config, device=device)
    return loaded.model.eval(), open_clip.get_tokenizer(name), name


__all__ = [
    "TEACHER_VERSION",
    "ToyTeacherConfig",
    "train_toy_teacher",
    "load_toy_clip",
    "register_model_config",
    "load_caption_corpus",
    "augment",
    "normalize_images",
]
