"""``EnsembleTeacher``: several teachers combined into one (registered as "ensemble")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.teachers.base import ClassNames, Teacher, build_teacher, register_teacher
from distill.utils import sha256_json

__all__ = ["EnsembleTeacher"]


@register_teacher("ensemble")
class EnsembleTeacher(Teacher):
    """Weighted combination of the normalized embeddings of several teachers.

    ``combine="mean"``: ``normalize(sum_i w_i e_i)`` with ``w`` normalized to sum 1; all members need the
    same ``embed_dim`` and should share an embedding space (e.g. one architecture with different
    checkpoints or preprocessing). ``combine="concat"``: ``[sqrt(w_1) e_1, ..., sqrt(w_m) e_m]`` (unit
    norm), so a text-image dot product is the weighted mean of the members' cosines; ``embed_dim`` is the
    sum of the members'.

    Args:
        members: teachers, or dicts ``{"name": <registered teacher>, **kwargs}`` built with ``build_teacher``.
        weights: one positive weight per member (default equal).
        combine: "mean" or "concat".
    """

    def __init__(
        self,
        members: Sequence[Teacher | Mapping],
        *,
        weights: Sequence[float] | None = None,
        combine: str = "mean",
    ):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member teacher")
        built = []
        for i, member in enumerate(members):
            if isinstance(member, Teacher):
                built.append(member)
            elif isinstance(member, Mapping) and "name" in member:
                spec = dict(member)
                built.append(build_teacher(spec.pop("name"), **spec))
            else:
                raise ValueError(
                    f"ensemble member {i}: expected a Teacher or {{'name': ..., **kwargs}}, "
                    f"got {type(member).__name__}"
                )
        self.members = nn.ModuleList(built)
        w = torch.tensor([1.0] * len(built) if weights is None else [float(x) for x in weights])
        if w.numel() != len(built) or not bool((w > 0).all()):
            raise ValueError(f"weights must be {len(built)} positive numbers, got {weights}")
        self.weights = (w / w.sum()).tolist()
        if combine not in ("mean", "concat"):
            raise ValueError(f"combine must be 'mean' or 'concat', got {combine!r}")
        self.combine = combine
        dims = [m.embed_dim for m in built]
        if combine == "mean" and len(set(dims)) != 1:
            raise ValueError(
                f"combine='mean' needs members with one embed_dim, got {dims} (use combine='concat')"
            )
        self.embed_dim = dims[0] if combine == "mean" else sum(dims)
        limits = [m.context_length for m in built if m.context_length]
        self.context_length = min(limits) if limits else None
        self.fingerprint = sha256_json(
            {
                "ensemble": [m.fingerprint for m in built],
                "weights": self.weights,
                "combine": combine,
            }
        )
        self.eval()

    def _combine(self, outputs: Sequence[Tensor]) -> Tensor:
        outputs = [F.normalize(o.float().to(self.device), dim=-1) for o in outputs]
        if self.combine == "concat":
            return torch.cat([o * w**0.5 for o, w in zip(outputs, self.weights)], dim=-1)
        return F.normalize(sum(o * w for o, w in zip(outputs, self.weights)), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        return self._combine([m.encode_text(texts) for m in self.members])

    def text_classifier(
        self,
        names: ClassNames,
        *,
        templates: str | Sequence[str] = "vild",
        cache: bool = True,
        batch_size: int = 1024,
        progress: bool | None = None,
    ) -> Tensor:
        """The members' (individually cached) classifiers, combined."""
        return self._combine(
            [
                m.text_classifier(
                    names,
                    templates=templates,
                    cache=cache,
                    batch_size=batch_size,
                    progress=progress,
                )
                for m in self.members
            ]
        )

    def encode_images(self, images: Tensor) -> Tensor:
        return self._combine([m.encode_images(images) for m in self.members])

    def region_embeddings(
        self, images: Sequence[Tensor], boxes: Sequence[Tensor], **kwargs
    ) -> list[Tensor]:
        images, boxes = list(images), list(boxes)
        per_member = [m.region_embeddings(images, boxes, **kwargs) for m in self.members]
        return [self._combine(parts) for parts in zip(*per_member)]
