"""Vocabulary arguments: class names from ``"cat, dog"``, a list, or ``@names.txt``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from distill.vocab import validate_class_names

__all__ = ["parse_vocabulary"]


def parse_vocabulary(vocabulary: str | Sequence[str], *, field: str = "vocabulary") -> list[str]:
    """Class names from ``"cat, dog,red star"``, a list of names, or ``@file.txt`` (one name per line).

    Raises ``ValueError`` naming ``field`` for an empty vocabulary, empty entries or duplicates
    (ignoring case and spaces): :func:`distill.vocab.validate_class_names`.
    """
    if isinstance(vocabulary, str):
        if vocabulary.startswith("@"):
            path = Path(vocabulary[1:])
            if not path.is_file():
                raise FileNotFoundError(f"{field}: vocabulary file {path} does not exist")
            names = [
                line.strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            field = f"{field} ({path})"
        else:
            names = [n.strip() for n in vocabulary.split(",")]
    else:
        names = [str(n).strip() for n in vocabulary]
    if not any(names):  # " , " or a blank file: an empty vocabulary, not empty entries
        names = []
    return validate_class_names(names, field=field)
