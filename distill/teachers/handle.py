"""``TeacherHandle``: a frozen teacher that a student module uses but does not own.

A model keeps the handle as a plain attribute, so the teacher is never a submodule: it is not in
``state_dict`` (checkpoints), ``parameters()`` (optimizers), DDP's buckets or ``model.to()``. A
handle made from a :class:`TeacherSpec` builds the teacher on first use, once per device; copies
(``copy.deepcopy`` of the model) start empty and build their own. A handle can also wrap a teacher
that is already built (e.g. a test's stub); copies then share that frozen teacher.

With ``expected_fingerprint`` every teacher the handle serves is checked with
:func:`distill.vocab.check_teacher_fingerprint` (e.g. against the student's text classifier).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from distill.teachers.spec import TeacherSpec, build_teacher_from_spec
from distill.vocab import check_teacher_fingerprint

__all__ = ["TeacherHandle"]

_FIX = "configure the teacher that made it, or recompute it with this teacher"


class TeacherHandle:
    """Serves the teacher of ``spec``, built lazily per device (not an ``nn.Module``).

    Args:
        spec: what to build.
        expected_fingerprint: fingerprint every served teacher must have (None: not checked).
        expected_from: where ``expected_fingerprint`` comes from (a file or config key), for
            messages.
    """

    def __init__(
        self,
        spec: TeacherSpec,
        *,
        expected_fingerprint: str | None = None,
        expected_from: str = "the text classifier",
    ) -> None:
        if not isinstance(spec, TeacherSpec):
            raise TypeError(
                f"TeacherHandle needs a TeacherSpec, got {type(spec).__name__} (use "
                f"TeacherSpec.from_mapping for a config dict, TeacherHandle.wrap for a "
                f"built teacher)"
            )
        self.spec: TeacherSpec | None = spec
        self.expected_fingerprint = expected_fingerprint
        self.expected_from = expected_from
        self._teachers: dict[str, Any] = {}
        self._wrapped: Any = None

    @classmethod
    def wrap(
        cls,
        teacher: Any,
        *,
        expected_fingerprint: str | None = None,
        expected_from: str = "the text classifier",
    ) -> TeacherHandle:
        """A handle serving ``teacher`` (anything with ``fingerprint``) on every device; its
        fingerprint is checked now."""
        handle = cls.__new__(cls)
        handle.spec, handle._teachers, handle._wrapped = None, {}, teacher
        handle.expected_fingerprint, handle.expected_from = expected_fingerprint, expected_from
        handle._check(teacher, what=f"the attached teacher ({type(teacher).__name__})")
        return handle

    @property
    def built_devices(self) -> list[str]:
        """Devices a teacher was built on so far (empty for a fresh or wrapping handle)."""
        return list(self._teachers)

    def get(self, device: str | torch.device | None = None) -> Any:
        """The teacher on ``device`` (default: the spec's), built on first use; a wrapped teacher
        whatever the device."""
        if self._wrapped is not None:
            return self._wrapped
        key = str(torch.device(device if device is not None else self.spec.device))
        if key not in self._teachers:
            teacher = build_teacher_from_spec(self.spec, device=key)
            self._check(teacher, what=f"the teacher of {self.spec.origin} ({self.spec.describe()})")
            self._teachers[key] = teacher
        return self._teachers[key]

    def _check(self, teacher: Any, *, what: str) -> None:
        check_teacher_fingerprint(
            self.expected_fingerprint,
            str(teacher.fingerprint),
            what=what,
            source=self.expected_from,
            fix=_FIX,
        )

    def __deepcopy__(self, memo: dict) -> TeacherHandle:
        if self._wrapped is not None:  # nothing to rebuild from: copies share the frozen teacher
            return TeacherHandle.wrap(
                self._wrapped,
                expected_fingerprint=self.expected_fingerprint,
                expected_from=self.expected_from,
            )
        return TeacherHandle(
            copy.deepcopy(self.spec, memo),
            expected_fingerprint=self.expected_fingerprint,
            expected_from=self.expected_from,
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickles leave built teachers out (a wrapped one is kept: it cannot be rebuilt)."""
        return {**self.__dict__, "_teachers": {}}

    def __repr__(self) -> str:
        wrapped = self._wrapped is not None
        what = f"wraps {type(self._wrapped).__name__}" if wrapped else self.spec.describe()
        return f"TeacherHandle({what}, built on {self.built_devices})"
