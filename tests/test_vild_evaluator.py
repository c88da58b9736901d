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


def test_detections_of_extra_test_classes_are_dropped(tmp_path):
    """``extra_class_names``: class index C + e is an extra test class (MODEL.VILD.CLASSES.
    TEST_EXTRA_NAMES); its detections leave the metrics unchanged, beyond that is still an error."""
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=4, seed=3)
    name = f"ov_eval_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root)
    records = load_ov_json(json_path, image_root)
    inputs, outputs = _outputs(records)
    for out in outputs:  # every GT box also detected as extra class 3 ("purple box"), higher score
        inst = out["instances"]
        extra = Instances(
            inst.image_size,
            pred_boxes=inst.pred_boxes.clone(),
            scores=torch.full((len(inst),), 0.95),
            pred_classes=torch.full((len(inst),), 3, dtype=torch.long),
        )
        out["instances"] = Instances.cat([extra, inst])
    evaluator = OVDetectionEvaluator(name, distributed=False, extra_class_names=("purple box",))
    evaluator.reset()
    evaluator.process(inputs, outputs)
    assert evaluator.num_dropped == sum(len(r["annotations"]) for r in records)
    assert evaluator.evaluate()["bbox"] == pytest.approx(
        {"novel_ap50": 100.0, "base_ap50": 100.0, "all_ap50": 100.0}
    )
    beyond = Instances(
        (64, 64),
        pred_boxes=Boxes(torch.tensor([[0.0, 0, 5, 5]])),
        scores=torch.tensor([0.5]),
        pred_classes=torch.tensor([4]),
    )
    with pytest.raises(ValueError, match="1 extra test classes"):
        evaluator.process([{"image_id": 1}], [{"instances": beyond}])
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_extra_test_class_enters_the_softmax_and_its_detections_are_dropped(tmp_path):
    """Hand case (BARON's OV-COCO test: 80 classes scored, 65 evaluated). Classes red / green /
    blue box + extra "purple box" with one-hot embeddings, temperature 0.1, background logit 0.

    Region A [0.6, 0, 0, 0.8]: logits red 6, extra 8, others 0. Over the dataset's classes only,
    p(red) = e^6 / (e^6 + 3); with the extra class p(red) = e^6 / (e^6 + e^8 + 3) and the extra
    class wins. Region B [0, 1, 0, 0] (green 10) keeps green. The evaluator drops the extra
    detection and keeps red at the lower, 80-class-like score."""
    import math

    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from detectors.config import add_ovdistill_config
    from detectors.data import dataset_vocabulary
    from detectors.modeling.vild_predictor import ViLDOutputLayers
    from distill.vocab import ClassifierFile

    json_path, image_root = write_tiny_dataset(tmp_path, num_images=1)
    name = f"ov_eval_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root)
    names = ["red box", "green box", "blue box", "purple box"]
    ClassifierFile.from_embeddings(names, torch.eye(4), teacher_fingerprint="hand").save(
        tmp_path / "text.pt"
    )
    cfg = get_cfg()
    add_ovdistill_config(cfg)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), (name,)
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(tmp_path / "text.pt")
    predictor = ViLDOutputLayers(
        ShapeSpec(channels=4),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        class_embeddings=torch.eye(4)[:3],
        class_names=names[:3],
        temperature=0.1,
        test_score_thresh=0.01,
    ).eval()
    with torch.no_grad():
        predictor.projection.weight.copy_(torch.eye(4))
        predictor.projection.bias.zero_()
        predictor.bg_embedding.copy_(torch.tensor([0.0, 0.0, 0.0, -1.0]))  # A: -8, B: 0
        for param in predictor.bbox_pred.parameters():  # boxes = proposals
            param.zero_()
    features = torch.tensor([[0.6, 0.0, 0.0, 0.8], [0.0, 1.0, 0.0, 0.0]])
    boxes = Boxes(torch.tensor([[2.0, 2.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]]))
    proposals = [Instances((64, 64), proposal_boxes=boxes)]

    def detections(extra):
        cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES = extra
        predictor.set_vocabulary(*dataset_vocabulary(cfg, name))
        with torch.no_grad():
            return predictor.inference(predictor(features), proposals)[0][0]

    plain = detections([])
    red = plain.scores[(plain.pred_classes == 0) & (plain.pred_boxes.tensor[:, 0] == 2)]
    e = math.exp  # region A: background logit -0.8 / 0.1 = -8
    assert red.tolist() == pytest.approx([e(6) / (e(6) + 2 + e(-8))], rel=1e-5)
    wide = detections(["purple box"])
    assert predictor.class_names == names
    on_a = wide.pred_boxes.tensor[:, 0] == 2
    top = wide.scores[on_a].argmax()
    assert wide.pred_classes[on_a][top] == 3  # the extra class wins region A
    red = wide.scores[on_a & (wide.pred_classes == 0)]
    assert red.tolist() == pytest.approx([e(6) / (e(6) + e(8) + 2 + e(-8))], rel=1e-5)
    evaluator = OVDetectionEvaluator(name, distributed=False, extra_class_names=("purple box",))
    evaluator.process([{"image_id": 1}], [{"instances": wide}])
    assert evaluator.num_dropped == int((wide.pred_classes == 3).sum()) >= 1
    assert {d["category_id"] for d in evaluator._predictions} <= {1, 2, 3}
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
