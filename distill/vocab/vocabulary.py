"""``Vocabulary``: the class names a detector/segmenter is trained or evaluated on, with roles."""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from .coco_json import read_json_source
from .names import validate_class_names

__all__ = ["ROLES", "NOVEL_ROLES", "Vocabulary", "lvis_frequency_groups"]

ROLES = ("base", "novel", "rare", "excluded")
"""Category roles. ``rare`` is LVIS's novel group; ``excluded`` classes (e.g. the 15 COCO classes
outside OV-COCO) are neither trained nor evaluated."""
NOVEL_ROLES = ("novel", "rare")
LVIS_FREQUENCIES = ("r", "c", "f")


@dataclasses.dataclass
class Vocabulary:
    """Parallel lists, one entry per class (index ``i`` = classifier row ``i``).

    Attributes:
        names: display names (the dataset's own spelling, e.g. LVIS ``"aerosol_can"``).
        category_ids: dataset category ids.
        roles: one of ``ROLES`` per class.
        synonyms: per class, the names used to build its text embedding (name first).

    Raises ``ValueError`` (naming the entries) for an empty vocabulary, empty or duplicate names
    (case/space-insensitive), duplicate ids, unknown roles or mismatched lengths.
    """

    names: list[str]
    category_ids: list[int]
    roles: list[str]
    synonyms: list[list[str]]

    def __post_init__(self) -> None:
        self.names = list(self.names)
        self.category_ids = [int(c) for c in self.category_ids]
        self.roles = list(self.roles)
        self.synonyms = [list(s) for s in self.synonyms]
        n = len(self.names)
        lengths = {
            "category_ids": len(self.category_ids),
            "roles": len(self.roles),
            "synonyms": len(self.synonyms),
        }
        bad_lengths = {k: v for k, v in lengths.items() if v != n}
        if bad_lengths:
            raise ValueError(f"vocabulary has {n} names but {bad_lengths}")
        validate_class_names(self.names, field="vocabulary", ids=self.category_ids)
        id_count: dict[int, int] = defaultdict(int)
        for cid in self.category_ids:
            id_count[cid] += 1
        dup_ids = sorted(c for c, k in id_count.items() if k > 1)
        if dup_ids:
            raise ValueError(f"duplicate category ids: {dup_ids}")
        bad_roles = {self.names[i]: r for i, r in enumerate(self.roles) if r not in ROLES}
        if bad_roles:
            raise ValueError(f"unknown roles {bad_roles}; expected one of {ROLES}")
        for name, syns in zip(self.names, self.synonyms):
            if not syns or any(not isinstance(s, str) or not s.strip() for s in syns):
                raise ValueError(
                    f"class {name!r}: synonyms must be a non-empty list of non-empty strings, got {syns!r}"
                )

    def __len__(self) -> int:
        return len(self.names)

    # ----------------------------------------------------------------- masks and subsets
    @property
    def base_mask(self) -> torch.Tensor:
        """Bool [N]: classes with role ``base``."""
        return torch.tensor([r == "base" for r in self.roles], dtype=torch.bool)

    @property
    def novel_mask(self) -> torch.Tensor:
        """Bool [N]: classes with role ``novel`` or ``rare``."""
        return torch.tensor([r in NOVEL_ROLES for r in self.roles], dtype=torch.bool)

    @property
    def id_to_index(self) -> dict[int, int]:
        """Category id -> contiguous class index."""
        return {cid: i for i, cid in enumerate(self.category_ids)}

    def ids_with_role(self, *roles: str) -> list[int]:
        """Category ids whose role is in ``roles``."""
        return [c for c, r in zip(self.category_ids, self.roles) if r in roles]

    def subset(self, roles: Iterable[str]) -> Vocabulary:
        """A new vocabulary with the classes whose role is in ``roles`` (order kept)."""
        roles = set([roles] if isinstance(roles, str) else roles)
        unknown = roles - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; expected a subset of {ROLES}")
        keep = [i for i, r in enumerate(self.roles) if r in roles]
        if not keep:
            raise ValueError(
                f"no class has a role in {sorted(roles)} (roles present: {sorted(set(self.roles))})"
            )
        return Vocabulary(
            [self.names[i] for i in keep],
            [self.category_ids[i] for i in keep],
            [self.roles[i] for i in keep],
            [list(self.synonyms[i]) for i in keep],
        )

    def text_inputs(self, *, use_synonyms: bool = True) -> list[list[str]]:
        """Per class, the prompt-ready names (``_`` -> space, de-duplicated, name first)."""
        out = []
        for name, syns in zip(self.names, self.synonyms):
            cleaned: list[str] = []
            for s in [name, *syns] if use_synonyms else [name]:
                s = " ".join(s.replace("_", " ").split())
                if s not in cleaned:
                    cleaned.append(s)
            out.append(cleaned)
        return out

    # ----------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        missing = [k for k in ("names", "category_ids", "roles", "synonyms") if k not in data]
        if missing:
            raise ValueError(f"vocabulary dict lacks keys {missing}")
        return cls(data["names"], data["category_ids"], data["roles"], data["synonyms"])

    @classmethod
    def from_names(cls, names: str | Sequence[str], *, role: str = "novel") -> Vocabulary:
        """A custom vocabulary, e.g. ``"cat,dog,red star"`` or ``["sofa|couch", "tv"]``.

        Entries are comma separated (when a string); ``|`` separates synonyms, the first being the
        name. Category ids are 1..N. Every class gets ``role`` (default ``novel``: classes the
        detector was not trained on).
        """
        items = names.split(",") if isinstance(names, str) else list(names)
        parsed = [[s.strip() for s in item.split("|")] for item in items]
        empty = [i for i, syns in enumerate(parsed) if not syns[0]]
        if empty:
            raise ValueError(f"empty class name at position(s) {empty} in {names!r}")
        syn_lists = [[s for s in syns if s] for syns in parsed]
        return cls(
            [s[0] for s in syn_lists],
            list(range(1, len(syn_lists) + 1)),
            [role] * len(syn_lists),
            syn_lists,
        )

    @classmethod
    def from_coco_json(
        cls,
        source: str | os.PathLike | Mapping[str, Any],
        *,
        novel_ids: Iterable[int] | None = None,
        base_ids: Iterable[int] | None = None,
        keep_excluded: bool = False,
    ) -> Vocabulary:
        """Vocabulary from a COCO/LVIS-format dataset's ``categories`` (in file order).

        Role of each category, first rule that applies:

        1. its ``"split"`` field (one of ``ROLES``), as written by :func:`make_base_only_json` and
           the toy world;
        2. ``novel_ids`` given: ``novel`` if listed; else ``base`` if ``base_ids`` is None or
           lists it; else ``excluded`` (e.g. OV-COCO: ``novel_ids=OV_COCO_NOVEL_IDS,
           base_ids=OV_COCO_BASE_IDS``; ``novel_ids=()`` marks every class base);
        3. LVIS ``"frequency"``: ``r`` -> ``rare``, ``c``/``f`` -> ``base``;
        4. otherwise ``ValueError`` naming the category.

        ``excluded`` classes are dropped unless ``keep_excluded``. Synonyms come from the
        category's ``"synonyms"`` field (LVIS) when present.
        """
        data, label = read_json_source(source)
        categories = data.get("categories")
        if not isinstance(categories, list) or not categories:
            raise ValueError(f"{label}: no 'categories' list (or it is empty)")
        known = {c.get("id") for c in categories if isinstance(c, dict)}
        novel = None if novel_ids is None else {int(i) for i in novel_ids}
        base = None if base_ids is None else {int(i) for i in base_ids}
        for arg, ids in (("novel_ids", novel), ("base_ids", base)):
            if ids is not None and ids - known:
                raise ValueError(
                    f"{label}: {arg} lists ids {sorted(ids - known)} that are not categories of this file"
                )
        if novel is not None and base is not None and novel & base:
            raise ValueError(f"novel_ids and base_ids overlap: {sorted(novel & base)}")
        names, ids, roles, synonyms = [], [], [], []
        for index, cat in enumerate(categories):
            if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
                raise ValueError(f"{label}: categories[{index}] lacks 'id' or 'name'")
            role = _category_role(cat, novel, base, label)
            if role == "excluded" and not keep_excluded:
                continue
            syns = [s for s in cat.get("synonyms") or [] if isinstance(s, str) and s.strip()]
            names.append(cat["name"])
            ids.append(cat["id"])
            roles.append(role)
            synonyms.append([cat["name"], *[s for s in syns if s != cat["name"]]])
        return cls(names, ids, roles, synonyms)


def _category_role(
    cat: Mapping[str, Any], novel: set[int] | None, base: set[int] | None, label: str
) -> str:
    where = f"{label}: category id {cat['id']} ({cat['name']!r})"
    if "split" in cat:
        if cat["split"] not in ROLES:
            raise ValueError(f"{where}: field 'split' is {cat['split']!r}; expected one of {ROLES}")
        return cat["split"]
    if novel is not None:
        if cat["id"] in novel:
            return "novel"
        return "base" if base is None or cat["id"] in base else "excluded"
    if "frequency" in cat:
        if cat["frequency"] not in LVIS_FREQUENCIES:
            raise ValueError(
                f"{where}: field 'frequency' is {cat['frequency']!r}; expected one of {LVIS_FREQUENCIES}"
            )
        return "rare" if cat["frequency"] == "r" else "base"
    raise ValueError(
        f"{where}: no 'split' or 'frequency' field and no novel_ids given; pass novel_ids "
        f"(novel_ids=() makes every class base)"
    )


def lvis_frequency_groups(
    categories: Sequence[Mapping[str, Any]] | Mapping[str, Any],
) -> dict[str, list[int]]:
    """``{"r": [ids], "c": [ids], "f": [ids]}`` (sorted) from LVIS categories' ``frequency`` field.

    ``categories`` is the category list or a whole dataset dict. Raises ``ValueError`` naming a
    category without (or with an invalid) ``frequency``.
    """
    if isinstance(categories, Mapping):
        categories = categories.get("categories", [])
    groups: dict[str, list[int]] = {f: [] for f in LVIS_FREQUENCIES}
    for cat in categories:
        freq = cat.get("frequency")
        if freq not in groups:
            raise ValueError(
                f"category id {cat.get('id')} ({cat.get('name')!r}) has frequency {freq!r}; "
                f"expected one of {LVIS_FREQUENCIES}"
            )
        groups[freq].append(int(cat["id"]))
    return {f: sorted(ids) for f, ids in groups.items()}
