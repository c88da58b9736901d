"""The OV-COCO split (OVR-CNN's, as used by ViLD, Detic and BARON): 48 base and 17 novel COCO
category ids; the other 15 COCO classes are excluded from training and evaluation."""
from __future__ import annotations

OV_COCO_BASE_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 7, 8, 9, 15, 16, 19, 20, 23, 24, 25, 27, 31, 33, 34, 35, 38, 42, 44, 48, 50, 51, 52, 53, 54,
    55, 56, 57, 59, 60, 62, 65, 70, 72, 73, 74, 75, 78, 79, 80, 82, 84, 85, 86, 90,
)

OV_COCO_NOVEL_NAMES: dict[int, str] = {
    5: "airplane", 6: "bus", 17: "cat", 18: "dog", 21: "cow", 22: "elephant", 28: "umbrella", 32: "tie",
    36: "snowboard", 41: "skateboard", 47: "cup", 49: "knife", 61: "cake", 63: "couch", 76: "keyboard",
    81: "sink", 87: "scissors",
}

OV_COCO_NOVEL_IDS: tuple[int, ...] = tuple(sorted(OV_COCO_NOVEL_NAMES))

assert len(OV_COCO_BASE_IDS) == 48 and len(OV_COCO_NOVEL_IDS) == 17
assert not set(OV_COCO_BASE_IDS) & set(OV_COCO_NOVEL_IDS)
