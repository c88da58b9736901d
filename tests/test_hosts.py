"""Smoke tests proving each host framework is real and works in this environment.

Each test exercises its host for real (tiny random-init models, generated data) and asserts something
that fails when the host is broken: a training step that changes weights, inference that returns the
host's own structures, and evaluators that reproduce a hand-computed AP.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch


def _tiny_faster_rcnn_cfg():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"  # BN, not FrozenBN: random init must still give sane losses
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 32
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 128
    return cfg


def _image_with_box(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 60, (3, 128, 128), generator=generator, dtype=torch.uint8)
    image[:, 30:90, 40:100] = 220  # a bright square object
    return image, torch.tensor([[40.0, 30.0, 100.0, 90.0]])


def test_detectron2_faster_rcnn_trains_and_infers():
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    cfg = _tiny_faster_rcnn_cfg()
    model = build_model(cfg)
    image, box = _image_with_box()
    instances = Instances((128, 128), gt_boxes=Boxes(box), gt_classes=torch.tensor([1]))
    batch = [{"image": image.float(), "instances": instances, "height": 128, "width": 128}]

    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) >= {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    before = copy.deepcopy(model.roi_heads.box_predictor.cls_score.weight.detach())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    total.backward()
    optimizer.step()
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)

    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": image.float(), "height": 256, "width": 256}])
    result = output["instances"]
    assert isinstance(result, Instances)
    assert result.image_size == (256, 256)  # rescaled to the requested output size
    assert len(result) > 0 and result.pred_boxes.tensor.shape[1] == 4
    assert ((result.pred_classes >= 0) & (result.pred_classes < 3)).all()


def test_mmseg_encoder_decoder_loss_and_predict():
    from mmengine.config import ConfigDict
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules()
    norm = dict(type="BN", requires_grad=True)
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(
            type="SegDataPreProcessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(64, 64),
        ),
        backbone=dict(
            type="ResNetV1c",
            depth=18,
            num_stages=4,
            out_indices=(3,),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm,
            contract_dilation=True,
        ),
        decode_head=dict(
            type="FCNHead",
            in_channels=512,
            in_index=0,
            channels=32,
            num_convs=1,
            num_classes=4,
            norm_cfg=norm,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg))  # as configs arrive from mmengine's Config
    assert type(model).__name__ == "EncoderDecoder"
    images, samples = [], []
    for seed in range(2):
        image, _ = _image_with_box(seed)
        images.append(image[:, :64, :64])
        label = torch.zeros(1, 64, 64, dtype=torch.long)
        label[:, 30:, 40:] = 2
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    losses = model(**data, mode="loss")
    loss = losses["decode.loss_ce"]
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0

    model.eval()
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=False)
    with torch.no_grad():
        predictions = model(**data, mode="predict")
    assert len(predictions) == 2
    pred = predictions[0].pred_sem_seg.data
    assert pred.shape == (1, 64, 64) and int(pred.max()) < 4


def test_mmcv_compiled_ops_run():
    from mmcv.ops import nms, roi_align

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = roi_align(
        feats, torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), (1, 1), 1.0, 0, "avg", True
    )
    assert pooled.item() == pytest.approx(feats.mean().item(), abs=1e-4)


def test_open_clip_random_init_encodes_offline():
    import open_clip

    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    ).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=16)  # bundled BPE vocab: offline
    tokens = tokenizer(["a photo of a red star", "a blue ring"])
    assert tokens.shape == (2, 16) and tokens[0, 0] == tokenizer.sot_token_id
    with torch.no_grad():
        image_features = model.encode_image(torch.randn(2, 3, 32, 32), normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    assert image_features.shape == text_features.shape == (2, 32)
    assert torch.allclose(text_features.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(text_features[0], text_features[1])


def _coco_gt() -> dict:
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (1, 2)]
    annotations = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10, 10, 30, 30],
            "area": 900,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 1,
            "bbox": [50, 50, 20, 20],
            "area": 400,
            "iscrowd": 0,
        },
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "star"}]}


def test_pycocotools_scores_known_ap(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_coco_gt()))
    gt = COCO(str(path))
    # One exact hit, one miss: recall saturates at 0.5 with precision 1 -> AP50 = 51/101 (101-point).
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.8},
    ]
    evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[1] == pytest.approx(51 / 101, abs=1e-6)


def test_lvis_api_scores_known_ap(tmp_path):
    from lvis import LVIS, LVISEval, LVISResults

    gt = _coco_gt()
    for image in gt["images"]:
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    gt["categories"][0].update(frequency="f", image_count=2, instance_count=2, synonyms=["star"])
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(gt))
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},
    ]
    lvis_gt = LVIS(str(path))
    evaluator = LVISEval(lvis_gt, LVISResults(lvis_gt, detections), "bbox")
    evaluator.run()
    assert evaluator.results["AP"] == pytest.approx(1.0, abs=1e-6)
    assert evaluator.results["APf"] == pytest.approx(1.0, abs=1e-6)


def test_distill_core_imports_without_host_frameworks():
    code = (
        "import sys, distill, distill.utils\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(distill.__path__, 'distill.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('detectron2', 'mmseg', 'mmcv', 'mmengine') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_numpy_is_the_pinned_major():
    # detectron2/mmcv fixes in env/compat.py target numpy 2; a silent downgrade would hide regressions.
    assert int(np.__version__.split(".")[0]) >= 2
