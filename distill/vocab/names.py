"""Class names: the normalized key they are matched by, and the one validator of name lists."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

__all__ = [
    "normalize_name",
    "validate_class_names",
    "canonical_class_entries",
    "names_and_synonyms",
]


def normalize_name(name: str) -> str:
    """Key used for duplicate detection and name lookup: lower case, whitespace collapsed."""
    return " ".join(name.lower().split())


def validate_class_names(
    names: Sequence[str], *, field: str, ids: Sequence[int] | None = None
) -> list[str]:
    """``names`` as a list, after checking it is a usable vocabulary.

    Args:
        names: one display name per class.
        field: what the names are (a config key, a file, an option); every message starts with it.
        ids: optional category id per name, quoted when a name is empty.

    Raises:
        ValueError: ``names`` is a string, is empty, has an empty (or non-string) entry, or has
            duplicates ignoring case and spaces (the colliding spellings are listed).
    """
    if isinstance(names, str):
        raise ValueError(f"{field}: expected a list of class names, got the string {names!r}")
    names = list(names)
    if not names:
        raise ValueError(
            f"{field}: the vocabulary is empty; give at least one class name (e.g. 'cat,dog')"
        )
    empty = [i for i, name in enumerate(names) if not isinstance(name, str) or not name.strip()]
    if empty:
        where = f" (category ids {[ids[i] for i in empty]})" if ids is not None else ""
        raise ValueError(f"{field}: empty class name at position(s) {empty}{where}")
    spellings: dict[str, list[str]] = defaultdict(list)
    for name in names:
        spellings[normalize_name(name)].append(name)
    duplicates = [group for group in spellings.values() if len(group) > 1]
    if duplicates:
        raise ValueError(f"{field}: duplicate class names (case/space-insensitive): {duplicates}")
    return names


def canonical_class_entries(
    entries: Sequence[str | Sequence[str]], *, field: str = "class names"
) -> list[str | list[str]]:
    """Per class a name or a list of synonyms, as plain JSON-like values (tuples -> lists).

    Raises ``ValueError`` naming ``field`` when ``entries`` is a single string.
    """
    if isinstance(entries, str):
        raise ValueError(f"{field}: expected a sequence of names, got the string {entries!r}")
    return [entry if isinstance(entry, str) else [str(s) for s in entry] for entry in entries]


def names_and_synonyms(
    entries: Sequence[str | Sequence[str]], *, field: str = "class names"
) -> tuple[list[str], list[list[str]]]:
    """Split class entries (a name, or synonyms with the name first) into ``(names, synonyms)``.

    ``["cat", ("dog", "puppy")]`` -> ``(["cat", "dog"], [["cat"], ["dog", "puppy"]])``. Raises
    ``ValueError`` naming ``field`` for a string or an empty synonym list.
    """
    canonical = canonical_class_entries(entries, field=field)
    empty = [i for i, entry in enumerate(canonical) if not entry]
    if empty:
        raise ValueError(f"{field}: empty synonym list at position(s) {empty}")
    synonyms = [[entry] if isinstance(entry, str) else entry for entry in canonical]
    return [s[0] for s in synonyms], synonyms
