"""Evaluators on hand-made ground truth with known answers (real pycocotools / lvis-api)."""

import contextlib
import copy
import io
import json
import math
import random

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from distill.evaluation import (
    SegmentationMetric,
    evaluate_ov_coco,
    evaluate_ov_lvis,
    format_ov_table,
    load_coco_gt,
    lvis_numpy_incompatibility,
)

HALF = (
    100.0 * 51 / 101
)  # recall 0.5 at precision 1: recall thresholds 0.00..0.50 (51 of 101) score 1

# ----------------------------------------------------------------------------------- OV-COCO
# categories: 1 base, 2 base without GT, 5 novel, 6 novel, 10 neither (excluded from every average)
NOVEL, BASE = (5, 6), (1, 2)


def _coco_gt():
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)]
    boxes = [
        (1, 1, [10, 10, 20, 20]),
        (2, 1, [50, 50, 30, 30]),  # class 1: two objects
        (1, 5, [60, 10, 25, 25]),  # class 5: one object
        (3, 6, [5, 5, 40, 40]),  # class 6: one object
        (3, 10, [50, 50, 20, 20]),
    ]  # class 10: not part of the split
    anns = [
        {
            "id": k + 1,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
        }
        for k, (img, cat, box) in enumerate(boxes)
    ]
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 5, 6, 10)]
    return {"images": images, "annotations": anns, "categories": cats}


def _perfect(gt, *, skip=()):
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": list(a["bbox"]),
            "score": 0.9,
        }
        for a in gt["annotations"]
        if a["id"] not in skip
    ]


def test_ov_coco_perfect_detections_score_100():
    gt = _coco_gt()
    result = evaluate_ov_coco(gt, _perfect(gt), novel_ids=NOVEL, base_ids=BASE)
    assert result["novel_ap50"] == pytest.approx(100.0)
    assert result["base_ap50"] == pytest.approx(100.0)
    assert result["all_ap50"] == pytest.approx(100.0)
    assert result["per_class"] == {
        1: pytest.approx(100.0),
        5: pytest.approx(100.0),
        6: pytest.approx(100.0),
    }
    assert result["no_gt_ids"] == [2]  # base class without GT: excluded
    assert result["num_classes"] == {"novel": 2, "base": 1}
    assert 10 not in result["per_class"]  # neither novel nor base
    table = format_ov_table(result, per_class=True)
    assert "novel" in table and "100.0" in table and "c5" in table


def test_ov_coco_half_found_and_false_positive_ranked_first():
    gt = _coco_gt()
    dets = _perfect(gt, skip={2})  # class 1: second object missed -> recall 0.5
    dets.append(
        {"image_id": 2, "category_id": 5, "bbox": [0, 0, 10, 10], "score": 0.99}
    )  # FP above class 5's TP
    result = evaluate_ov_coco(gt, dets, novel_ids=NOVEL, base_ids=BASE)
    assert result["per_class"][1] == pytest.approx(HALF)
    assert result["per_class"][5] == pytest.approx(50.0)  # precision 1/2 at recall 1 everywhere
    assert result["per_class"][6] == pytest.approx(100.0)
    assert result["base_ap50"] == pytest.approx(HALF)
    assert result["novel_ap50"] == pytest.approx(75.0)
    assert result["all_ap50"] == pytest.approx((HALF + 50.0 + 100.0) / 3)


def test_ov_coco_split_without_predictions_and_empty_list():
    gt = _coco_gt()
    base_only = [d for d in _perfect(gt) if d["category_id"] not in NOVEL]
    result = evaluate_ov_coco(gt, base_only, novel_ids=NOVEL, base_ids=BASE)
    assert result["novel_ap50"] == 0.0 and result["base_ap50"] == pytest.approx(100.0)
    assert result["all_ap50"] == pytest.approx(100.0 / 3)
    empty = evaluate_ov_coco(gt, [], novel_ids=NOVEL, base_ids=BASE)
    assert (empty["novel_ap50"], empty["base_ap50"], empty["all_ap50"]) == (0.0, 0.0, 0.0)
    assert empty["per_class"] == {1: 0.0, 5: 0.0, 6: 0.0} and empty["no_gt_ids"] == [2]
    # only detections of a class outside the split: same as no detections
    only_other = [d for d in _perfect(gt) if d["category_id"] == 10]
    assert evaluate_ov_coco(gt, only_other, novel_ids=NOVEL, base_ids=BASE)["all_ap50"] == 0.0


def test_ov_coco_all_ap50_matches_cocoeval_summary_on_random_detections(tmp_path):
    gt = _coco_gt()
    rng = random.Random(0)
    dets = []
    for ann in gt["annotations"]:
        for _ in range(3):
            x, y, w, h = ann["bbox"]
            jitter = [
                x + rng.uniform(-8, 8),
                y + rng.uniform(-8, 8),
                w * rng.uniform(0.6, 1.3),
                h * rng.uniform(0.6, 1.3),
            ]
            dets.append(
                {
                    "image_id": rng.choice([1, 2, 3]) if rng.random() < 0.3 else ann["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": jitter,
                    "score": rng.random(),
                }
            )
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ours = evaluate_ov_coco(path, copy.deepcopy(dets), novel_ids=NOVEL, base_ids=BASE)
    coco_gt = load_coco_gt(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.params.catIds = [1, 2, 5, 6]
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ours["all_ap50"] == pytest.approx(
        ev.stats[1] * 100.0
    )  # stats[1]: AP at IoU .5, area all, 100 dets
    assert 0.0 < ours["all_ap50"] < 100.0


def test_ov_coco_input_errors():
    gt = _coco_gt()
    with pytest.raises(ValueError, match="overlap"):
        evaluate_ov_coco(gt, [], novel_ids=[1], base_ids=[1])
    bad = _perfect(gt)
    bad[2]["score"] = float("nan")
    with pytest.raises(ValueError, match=r"detection \[2\].*'score'"):
        evaluate_ov_coco(gt, bad, novel_ids=NOVEL, base_ids=BASE)
    with pytest.raises(ValueError, match=r"detection \[0\]: field 'image_id' 42"):
        evaluate_ov_coco(
            gt,
            [{"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}],
            novel_ids=NOVEL,
            base_ids=BASE,
        )
    dets = _perfect(gt)
    evaluate_ov_coco(gt, dets, novel_ids=NOVEL, base_ids=BASE)
    assert "id" not in dets[0] and "area" not in dets[0]  # caller's detections are not mutated


# -------------------------------------------------------------------------------------- LVIS
def test_installed_lvis_runs_on_installed_numpy():
    # lvis 0.5.3 from PyPI calls np.float (removed in numpy 1.24); env/compat.py patches it
    assert lvis_numpy_incompatibility() is None


def _poly(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _lvis_gt():
    """3 images, categories 1 (rare), 2 (common), 3 (frequent); small / medium / large objects."""
    images = [
        {
            "id": 1,
            "width": 200,
            "height": 200,
            "neg_category_ids": [2],
            "not_exhaustive_category_ids": [],
        },
        {
            "id": 2,
            "width": 200,
            "height": 200,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [],
        },
        {
            "id": 3,
            "width": 200,
            "height": 200,
            "neg_category_ids": [1, 2],
            "not_exhaustive_category_ids": [],
        },
    ]
    boxes = [
        (1, 1, [10, 10, 20, 20]),  # rare, small
        (1, 3, [100, 100, 50, 50]),  # frequent, medium
        (2, 2, [20, 20, 120, 120]),  # common, large
        (2, 1, [160, 160, 20, 20]),  # rare, small
        (3, 3, [30, 30, 50, 50]),
    ]  # frequent, medium
    anns = [
        {
            "id": k + 1,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            "segmentation": _poly(*box),
        }
        for k, (img, cat, box) in enumerate(boxes)
    ]
    cats = [
        {
            "id": 1,
            "name": "aerosol_can",
            "synonyms": ["aerosol_can"],
            "frequency": "r",
            "image_count": 2,
            "instance_count": 2,
        },
        {
            "id": 2,
            "name": "apple",
            "synonyms": ["apple"],
            "frequency": "c",
            "image_count": 1,
            "instance_count": 1,
        },
        {
            "id": 3,
            "name": "banana",
            "synonyms": ["banana"],
            "frequency": "f",
            "image_count": 2,
            "instance_count": 2,
        },
    ]
    return {"images": images, "annotations": anns, "categories": cats}


def _write(tmp_path, data):
    path = tmp_path / "lvis_val.json"
    path.write_text(json.dumps(data))
    return path


def test_ov_lvis_perfect_detections_score_100(tmp_path):
    gt = _lvis_gt()
    result = evaluate_ov_lvis(_write(tmp_path, gt), _perfect(gt))
    assert set(result) == {"ap", "ap50", "ap75", "aps", "apm", "apl", "apr", "apc", "apf"}
    for key, value in result.items():
        assert value == pytest.approx(100.0), key


def test_ov_lvis_known_partial_and_federated(tmp_path):
    gt = _lvis_gt()
    path = _write(tmp_path, gt)
    dets = _perfect(gt, skip={4})  # second rare object missed -> rare class recall 0.5 at every IoU
    result = evaluate_ov_lvis(path, dets)
    assert result["apr"] == pytest.approx(HALF)
    assert result["apc"] == pytest.approx(100.0) and result["apf"] == pytest.approx(100.0)
    assert result["ap"] == pytest.approx((HALF + 200.0) / 3)
    assert result["aps"] == pytest.approx(HALF)  # only the rare class has small objects
    assert result["apm"] == pytest.approx(100.0) and result["apl"] == pytest.approx(100.0)
    # federated: class 3 on image 2 is neither present nor verified absent -> ignored;
    # class 2 on image 3 is verified absent (neg_category_ids) -> a false positive ranked first
    extra = [
        {"image_id": 2, "category_id": 3, "bbox": [0, 0, 30, 30], "score": 1.0},
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 30, 30], "score": 1.0},
    ]
    result = evaluate_ov_lvis(path, _perfect(gt) + extra)
    assert result["apf"] == pytest.approx(100.0)
    assert result["apc"] == pytest.approx(50.0)
    assert result["apr"] == pytest.approx(100.0)


def test_ov_lvis_segm_and_group_without_gt(tmp_path):
    gt = _lvis_gt()
    gt["annotations"] = [
        a for a in gt["annotations"] if a["category_id"] != 1
    ]  # no rare ground truth
    path = _write(tmp_path, gt)
    from pycocotools import mask as mask_utils

    dets = []
    for a in gt["annotations"]:
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 200, 200))
        rle["counts"] = rle["counts"].decode("ascii")
        dets.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "segmentation": rle,
                "score": 0.8,
            }
        )
    result = evaluate_ov_lvis(path, dets, iou_type="segm")
    assert math.isnan(result["apr"]) and math.isnan(result["aps"])
    assert result["ap"] == pytest.approx(100.0) and result["apc"] == pytest.approx(100.0)


def test_ov_lvis_empty_detections_and_errors(tmp_path):
    path = _write(tmp_path, _lvis_gt())
    result = evaluate_ov_lvis(path, [])
    assert all(v == 0.0 for v in result.values())
    with pytest.raises(ValueError, match=r"detection \[0\].*'bbox'"):
        evaluate_ov_lvis(
            path, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, float("inf"), 1], "score": 1.0}]
        )
    with pytest.raises(FileNotFoundError):
        evaluate_ov_lvis(tmp_path / "missing.json", [])


# ------------------------------------------------------------------------------ segmentation
def test_segmentation_metric_hand_computed():
    metric = SegmentationMetric(3, seen=[0, 1], unseen=[2], class_names=["sky", "road", "cow"])
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    metric.update(pred, gt)
    # confusion (rows gt): [[1, 1, 0], [0, 2, 0], [1, 0, 0]]; the ignored pixel is dropped
    assert metric.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    out = metric.compute()
    assert out["per_class"]["sky"] == pytest.approx(100 / 3)  # 1 / (2 + 2 - 1)
    assert out["per_class"]["road"] == pytest.approx(200 / 3)  # 2 / (2 + 3 - 2)
    assert out["per_class"]["cow"] == pytest.approx(0.0)  # 0 / (1 + 0 - 0)
    assert out["seen_miou"] == pytest.approx(50.0)
    assert out["unseen_miou"] == 0.0 and out["hiou"] == 0.0
    assert out["miou"] == pytest.approx(100 / 3)
    assert out["pixel_acc"] == pytest.approx(60.0)
    assert "cow" in metric.format_table()


def test_segmentation_metric_absent_class_is_nan_and_excluded_and_hiou():
    metric = SegmentationMetric(4, seen=[0], unseen=[1, 3], ignore_index=255)
    # class 0: IoU 1/2; class 1: IoU 1/4; class 2 (background-like, neither set): IoU 1; class 3 absent
    metric.update(torch.tensor([[0, 0, 1, 2]]), torch.tensor([[0, 1, 1, 2]]))
    metric.update(torch.tensor([[1, 1]]), torch.tensor([[255, 255]]))  # fully ignored
    metric.update(np.array([1, 2]), np.array([1, 2]))
    metric.update(np.array([0, 1]), np.array([1, 1]))
    # confusion rows gt: 0: [1,0,0,0]; 1: [2,3,0,0]; 2: [0,0,2,0] -> IoU0 = 1/3, IoU1 = 3/5, IoU2 = 1
    out = metric.compute()
    assert math.isnan(out["per_class"]["3"])
    assert out["seen_miou"] == pytest.approx(100 / 3)
    assert out["unseen_miou"] == pytest.approx(60.0)  # class 3 excluded
    assert out["hiou"] == pytest.approx(2 * (100 / 3) * 60 / (100 / 3 + 60))
    assert out["miou"] == pytest.approx((100 / 3 + 60 + 100) / 3)


def test_segmentation_metric_batched_equals_sequential_and_merge():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, size=(3, 8, 8))
    gt[0, :2] = 255
    pred = rng.integers(0, 5, size=(3, 8, 8))
    batched = SegmentationMetric(5, seen=[0, 1, 2], unseen=[3, 4])
    batched.update(pred, gt)
    seq = SegmentationMetric(5, seen=[0, 1, 2], unseen=[3, 4])
    part = SegmentationMetric(5, seen=[0, 1, 2], unseen=[3, 4])
    seq.update(pred[0], gt[0])
    part.update(pred[1:], gt[1:])
    seq.merge(part)
    assert np.array_equal(batched.confusion, seq.confusion)
    assert batched.confusion.sum() == 3 * 64 - 16


def test_segmentation_metric_errors():
    metric = SegmentationMetric(3, seen=[0, 1], unseen=[2])
    with pytest.raises(ValueError, match="label 7"):
        metric.update(np.zeros((2, 2), dtype=int), np.array([[0, 7], [1, 255]]))
    with pytest.raises(ValueError, match="pred contains label 255"):
        metric.update(np.array([[0, 255]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros((2, 2), dtype=int), np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="overlap"):
        SegmentationMetric(3, seen=[0, 1], unseen=[1])
    with pytest.raises(ValueError, match="outside"):
        SegmentationMetric(3, seen=[0, 1], unseen=[3])
    assert metric.confusion.sum() == 0  # failed updates add nothing
