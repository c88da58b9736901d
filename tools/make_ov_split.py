"""Write a base-only training annotation file.

    python tools/make_ov_split.py coco instances_train2017.json instances_train2017_ovd_base.json
    python tools/make_ov_split.py lvis lvis_v1_train.json lvis_v1_train_norare.json

``coco`` keeps the 48 OV-COCO base classes' annotations (all images, all categories, each marked
with ``"split"``: base / novel / excluded); ``lvis`` drops rare-class annotations. Prints the
counts as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json

from distill.vocab import OV_COCO_BASE_IDS, OV_COCO_NOVEL_IDS, make_base_only_json


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=("coco", "lvis"))
    parser.add_argument("src", help="source COCO/LVIS annotation json")
    parser.add_argument("dst", help="output json (written atomically)")
    args = parser.parse_args(argv)
    if args.dataset == "coco":
        counts = make_base_only_json(
            args.src,
            args.dst,
            keep_category_ids=OV_COCO_BASE_IDS,
            novel_category_ids=OV_COCO_NOVEL_IDS,
        )
    else:
        counts = make_base_only_json(args.src, args.dst, drop_frequencies=("r",))
    print(json.dumps(counts))
    return counts


if __name__ == "__main__":
    main()
