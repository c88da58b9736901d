"""Errors raised by teachers (a module of its own: ``base`` and ``text`` both need them)."""

from __future__ import annotations

__all__ = ["TextTooLongError"]


class TextTooLongError(ValueError):
    """A text does not fit the text encoder's context (teachers never truncate silently)."""

    def __init__(self, text: str, tokens: int, limit: int):
        super().__init__(
            f"text {text!r} takes {tokens} tokens > context length {limit} (not truncated silently)"
        )
        self.text, self.tokens, self.limit = text, tokens, limit
