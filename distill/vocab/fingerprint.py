"""The one check that two artefacts come from the same teacher (their ``teacher_fingerprint``s)."""

from __future__ import annotations

__all__ = ["check_teacher_fingerprint"]

DEFAULT_FIX = "recompute it with the same teacher, or configure the teacher it was made with"


def check_teacher_fingerprint(
    expected: str | None, actual: str, *, what: str, source: str, fix: str = DEFAULT_FIX
) -> None:
    """Raise unless ``actual == expected`` (compared as strings); nothing to check if ``expected``
    is None or empty.

    Args:
        expected: the reference fingerprint (e.g. the training classifier file's).
        actual: the fingerprint being checked.
        what: the thing ``actual`` belongs to, naming its file or config key (e.g.
            ``"text classifier out/text.pt"``, ``"the configured teacher (MODEL.VILD.TEACHER)"``).
        source: where ``expected`` comes from, naming its file or config key.
        fix: how to resolve the mismatch (ends the message).

    Raises:
        ValueError: ``"teacher fingerprint mismatch: <what> has fingerprint <actual>, <source> has
            <expected> (a different teacher); <fix>"``.
    """
    if not expected or str(actual) == str(expected):
        return
    raise ValueError(
        f"teacher fingerprint mismatch: {what} has fingerprint {str(actual)!r}, "
        f"{source} has {str(expected)!r} (a different teacher); {fix}"
    )
