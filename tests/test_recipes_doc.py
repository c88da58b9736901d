"""docs/recipes.md stays complete: every row has one of the three statuses, every audit item has
an outcome, and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "recipes.md"
STATUSES = ("same", "option (default off in official configs)", "deviation")


def _tables() -> dict[str, list[list[str]]]:
    """Markdown tables by their ``##`` heading: rows of cells, header and rule lines dropped."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and not re.match(r"^\|\s*(-|detail\b|#\s)", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            tables.setdefault(heading, []).append(cells)
    return tables


def test_every_method_row_has_a_status():
    method_tables = {h: rows for h, rows in _tables().items() if "@" in h}
    assert {h.split(" (")[0] for h in method_tables} >= {
        "ViLD",
        "BARON",
        "MaskCLIP",
        "MaskCLIP+",
        "LSeg",
        "CLIP-ES",
    }
    for heading, rows in method_tables.items():
        for cells in rows:
            assert len(cells) == 4, (heading, cells[0])
            assert cells[3].startswith(STATUSES), f"{heading}: {cells[0]}: {cells[3][:60]}"


def test_every_audit_item_has_an_outcome_and_its_tests_exist():
    rows = _tables()["The 22 audit items"]
    assert [int(r[0]) for r in rows] == list(range(1, 23))
    for number, _, _, outcome, tests in rows:
        assert outcome.startswith(("fixed", "deviation")), number
        for file, name in re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?", tests):
            source = (REPO / "tests" / file).read_text(encoding="utf-8")
            assert name is None or f"def {name}" in source, (number, file, name)
