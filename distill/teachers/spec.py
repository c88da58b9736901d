"""``TeacherSpec``: what to build as a teacher, independent of the host's config system.

Hosts turn their config into a spec (Detectron2: ``MODEL.VILD.TEACHER``; MMSeg: the ``teacher``
dict) and build it with :func:`build_teacher_from_spec`, or hand it to a lazy
:class:`distill.teachers.handle.TeacherHandle`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch

from distill.teachers.base import Teacher, build_teacher

__all__ = ["TeacherSpec", "build_teacher_from_spec"]

_FIELDS = ("model_name", "pretrained", "model_config", "precision")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """A registered teacher and its constructor arguments.

    Attributes:
        name: ``distill.teachers.TEACHERS`` key (``"clip"``, ``"ensemble"``, ...).
        model_name / pretrained / model_config / precision: the teacher's arguments of those names;
            ``None`` leaves the teacher's default.
        device: where it is built unless :func:`build_teacher_from_spec` is given another device.
        extra: further keyword arguments of the teacher.
        origin: the config key or file the spec came from (error messages name it).
    """

    name: str = "clip"
    model_name: str | None = None
    pretrained: str | os.PathLike | None = None
    model_config: str | os.PathLike | Mapping[str, Any] | None = None
    device: str = "cpu"
    precision: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    origin: str = "teacher"

    @classmethod
    def from_mapping(
        cls, cfg: Mapping[str, Any], *, origin: str = "teacher", device: str | torch.device = "cpu"
    ) -> TeacherSpec:
        """A spec from an MMEngine-style dict: ``type`` (default ``"clip"``) + keyword arguments.

        A ``device`` entry is ignored (the host chooses the device); ``"clip"`` needs
        ``model_name``.
        """
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{origin}: teacher config must be a dict, got {type(cfg).__name__}")
        kwargs = copy.deepcopy(dict(cfg))
        name = kwargs.pop("type", "clip")
        kwargs.pop("device", None)
        known = {k: kwargs.pop(k) for k in _FIELDS if k in kwargs}
        if name == "clip" and not known.get("model_name"):
            raise ValueError(f"{origin}: teacher config needs model_name, got {dict(cfg)}")
        return cls(name=str(name), device=str(device), extra=kwargs, origin=origin, **known)

    def kwargs(self) -> dict[str, Any]:
        """The teacher's keyword arguments (without ``device``; ``None`` fields left out)."""
        out = {k: getattr(self, k) for k in _FIELDS if getattr(self, k) is not None}
        out.update(copy.deepcopy(dict(self.extra)))
        return out

    def describe(self) -> str:
        """Short human-readable description, e.g. ``clip ViT-B-16 (openai)``."""
        weights = f"({self.pretrained})" if self.pretrained else ""
        parts = [self.name, self.model_name or "", weights]
        return " ".join(p for p in parts if p)


def build_teacher_from_spec(
    spec: TeacherSpec, *, device: str | torch.device | None = None
) -> Teacher:
    """Build ``spec`` on ``device`` (default: ``spec.device``)."""
    if spec.name == "clip" and not spec.model_name:
        raise ValueError(
            f"{spec.origin}: the clip teacher needs a model_name (an open_clip "
            f"architecture, e.g. ViT-B-32)"
        )
    where = str(device) if device is not None else spec.device
    return build_teacher(spec.name, device=where, **spec.kwargs())
