"""Writing base-only training annotation files (OV-COCO base 48; OV-LVIS without rare)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

from ..utils import write_json_atomic
from .coco_json import load_coco_json
from .vocabulary import lvis_frequency_groups

__all__ = ["make_base_only_json"]


def make_base_only_json(
    src_json: str | os.PathLike,
    dst_json: str | os.PathLike,
    *,
    keep_category_ids: Iterable[int] | None = None,
    novel_category_ids: Iterable[int] | None = None,
    drop_frequencies: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write a copy of ``src_json`` with only base-class annotations (atomic write).

    Two modes:

    - COCO (``keep_category_ids`` given, e.g. ``OV_COCO_BASE_IDS``): keep annotations of those
      categories. All images and the full category list are kept; each category gets a
      ``"split"`` field: ``base`` if kept, ``novel`` if in ``novel_category_ids`` (or, when that
      is None, every other class), else ``excluded``.
    - LVIS (default, ``drop_frequencies=("r",)``): drop annotations of categories whose
      ``frequency`` is listed. Images and categories are kept unchanged.

    The source is validated with :func:`load_coco_json` first.

    Returns:
        Counts: ``images``, ``categories``, ``annotations_kept``, ``annotations_dropped``, and
        ``categories_<role>`` / ``categories_<frequency>`` per group.
    """
    if keep_category_ids is not None and drop_frequencies is not None:
        raise ValueError(
            "give either keep_category_ids (COCO) or drop_frequencies (LVIS), not both"
        )
    data = load_coco_json(src_json)
    category_ids = {c["id"] for c in data["categories"]}
    counts: dict[str, int] = {"images": len(data["images"]), "categories": len(data["categories"])}
    if keep_category_ids is not None:
        keep = {int(i) for i in keep_category_ids}
        novel = None if novel_category_ids is None else {int(i) for i in novel_category_ids}
        for arg, ids in (("keep_category_ids", keep), ("novel_category_ids", novel)):
            if ids is not None and ids - category_ids:
                raise ValueError(
                    f"{src_json}: {arg} lists ids {sorted(ids - category_ids)} that are not categories"
                )
        if novel is not None and keep & novel:
            raise ValueError(
                f"keep_category_ids and novel_category_ids overlap: {sorted(keep & novel)}"
            )
        categories = []
        for cat in data["categories"]:
            if cat["id"] in keep:
                split = "base"
            elif novel is None or cat["id"] in novel:
                split = "novel"
            else:
                split = "excluded"
            categories.append({**cat, "split": split})
        data["categories"] = categories
        counts.update(
            {
                f"categories_{k}": v
                for k, v in sorted(Counter(c["split"] for c in categories).items())
            }
        )
    else:
        if novel_category_ids is not None:
            raise ValueError("novel_category_ids only applies with keep_category_ids (COCO mode)")
        drop = tuple(drop_frequencies) if drop_frequencies is not None else ("r",)
        groups = lvis_frequency_groups(data["categories"])
        unknown = set(drop) - set(groups)
        if unknown:
            raise ValueError(
                f"drop_frequencies has unknown values {sorted(unknown)}; expected some of {tuple(groups)}"
            )
        keep = {cid for freq, ids in groups.items() if freq not in drop for cid in ids}
        counts.update({f"categories_{freq}": len(ids) for freq, ids in groups.items()})
    annotations = [a for a in data["annotations"] if a["category_id"] in keep]
    counts["annotations_kept"] = len(annotations)
    counts["annotations_dropped"] = len(data["annotations"]) - len(annotations)
    data["annotations"] = annotations
    write_json_atomic(dst_json, data)
    return counts
