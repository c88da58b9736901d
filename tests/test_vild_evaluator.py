"""OVDetectionEvaluator: Detectron2 outputs -> distill.evaluation's OV-COCO protocol -> ov_metrics.json."""

import json

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from detectors.data import load_ov_json, register_ov_dataset  # noqa: E402
from detectors.evaluation import OVDetectionEvaluator  # noqa: E402
from detectors.testing import write_tiny_dataset  # noqa: E402


def _outputs(records, *, drop_class=None):
    inputs, outputs = [], []
    for record in records:
        anns = [a for a in record["annotations"] if a["category_id"] != drop_class]
        boxes = torch.tensor(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in anns
            ],
            dtype=torch.float32,
        ).reshape(-1, 4)
        inst = Instances(
            (record["height"], record["width"]),
            pred_boxes=Boxes(boxes),
            scores=torch.full((len(anns),), 0.9),
            pred_classes=torch.tensor([a["category_id"] for a in anns], dtype=torch.long),
        )
        inputs.append({"image_id": record["image_id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def test_perfect_and_partial_detections(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=6, seed=3)
    name = f"ov_eval_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root)
    records = load_ov_json(json_path, image_root)
    evaluator = OVDetectionEvaluator(name, output_dir=tmp_path / "out", distributed=False)
    evaluator.reset()
    evaluator.process(*_outputs(records))
    results = evaluator.evaluate()
    assert results["bbox"] == pytest.approx(
        {"novel_ap50": 100.0, "base_ap50": 100.0, "all_ap50": 100.0}
    )
    written = json.loads((tmp_path / "out" / "ov_metrics.json").read_text())
    assert written["dataset"] == name and written["novel_ap50"] == pytest.approx(100.0)
    assert set(written["per_class"]) == {"1", "2", "3"}
    # no detection of the novel class (contiguous 2 = category id 3): novel 0, base 100, all 2/3
    evaluator.reset()
    evaluator.process(*_outputs(records, drop_class=2))
    results = evaluator.evaluate()["bbox"]
    assert results["novel_ap50"] == pytest.approx(0.0) and results["base_ap50"] == pytest.approx(
        100.0
    )
    assert results["all_ap50"] == pytest.approx(200.0 / 3)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_prediction_outside_the_dataset_vocabulary_is_an_error(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=1)
    name = f"ov_eval_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root)
    evaluator = OVDetectionEvaluator(name, distributed=False)
    inst = Instances(
        (64, 64),
        pred_boxes=Boxes(torch.tensor([[0.0, 0, 5, 5]])),
        scores=torch.tensor([0.5]),
        pred_classes=torch.tensor([7]),
    )
    with pytest.raises(ValueError, match="vocabulary"):
        evaluator.process([{"image_id": 1}], [{"instances": inst}])
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
