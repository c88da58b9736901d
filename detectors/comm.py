"""Distributed helpers of the preparation steps (on top of ``detectron2.utils.comm``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from detectron2.utils import comm

__all__ = ["main_process_first"]

Result = TypeVar("Result")


def main_process_first(fn: Callable[[], Result]) -> Result:
    """Run ``fn`` on the main process, then (after a barrier) on the others, which find its outputs
    cached; returns this process's result."""
    result = fn() if comm.is_main_process() else None
    comm.synchronize()
    if not comm.is_main_process():
        result = fn()
    return result
