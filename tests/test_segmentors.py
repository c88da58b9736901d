"""Unit tests of the MMSegmentation plug-ins (segmentors/): heads, targets, metric, dataset, tools' config prep."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample
from PIL import Image

import segmentors  # noqa: F401  (registers everything into MMSeg's registries)
from distill.teachers import TeacherSpec, build_teacher_from_spec
from distill.utils import sha256_json
from distill.vocab import ClassifierFile, cosine_logits, dense_cosine_logits
from segmentors.maskclip_plus import pseudo_targets
from segmentors.runner import fill_placeholders, text_embedding_specs
from segmentors.utils import slide_inference, teacher_images

init_default_scope("mmseg")  # pipelines built outside a Runner resolve transforms in MMSeg's scope

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_NAME = "ovd-seg-test-tiny-vit"


def tiny_teacher_cfg(tmp_path) -> dict:
    """A tiny random-init open_clip ViT saved as a checkpoint (what ensure_toy_teacher produces)."""
    from distill.teachers import ClipTeacher

    config = tmp_path / f"{TINY_NAME}.json"
    config.write_text(json.dumps(TINY_CLIP))
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.manual_seed(0)
    teacher = ClipTeacher(TINY_NAME, model_config=config, allow_random_init=True)
    torch.save(teacher.model.state_dict(), checkpoint)
    return dict(
        type="clip", model_name=TINY_NAME, pretrained=str(checkpoint), model_config=str(config)
    )


def write_text_file(path, names, dim=4, seed=0):
    emb = F.normalize(
        torch.randn(len(names), dim, generator=torch.Generator().manual_seed(seed)), dim=1
    )
    ClassifierFile.from_entries(
        names, emb, teacher_fingerprint="fp-test", provenance={"templates": "simple"}
    ).save(path)
    return emb


def sample(label: torch.Tensor, **meta) -> SegDataSample:
    s = SegDataSample(
        metainfo=dict(img_shape=tuple(label.shape), ori_shape=tuple(label.shape), **meta)
    )
    s.gt_sem_seg = PixelData(data=label[None].long())
    return s


# ----------------------------------------------------------------------------- pseudo-labels
def test_pseudo_targets_hand_computed():
    gt = torch.tensor([[[0, 1, 2, 3]]])  # [1, 1, 4]: labels 2, 3 unseen
    scores = torch.tensor(
        [
            [
                [[5.0, 5.0, 1.0, 0.0]],  # class 2
                [[0.0, 0.0, 2.0, 9.0]],
            ]
        ]
    )  # class 3 -> [1, 2, 1, 4]
    relabel = torch.isin(gt, torch.tensor([2, 3]))
    out = pseudo_targets(gt, scores, candidates=[2, 3], relabel=relabel)
    assert out.tolist() == [[[0, 1, 3, 3]]]  # seen kept; unseen -> argmax over {2, 3}
    # softmax([1, 2]) max = 0.73 < 0.8 -> ignored; softmax([0, 9]) max ~ 1 -> kept
    out = pseudo_targets(gt, scores, candidates=[2, 3], relabel=relabel, confidence_threshold=0.8)
    assert out.tolist() == [[[0, 1, 255, 3]]]


def test_pseudo_targets_rejects_bad_shapes():
    gt = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="scores must be"):
        pseudo_targets(gt, torch.zeros(1, 3, 2, 2), candidates=[1, 2], relabel=gt.bool())


# ----------------------------------------------------------------------------- text files + heads
def test_text_embedding_file_roundtrip_and_errors(tmp_path):
    path = tmp_path / "text.pt"
    emb = write_text_file(path, ["cat", ["dog", "puppy"]])
    loaded = ClassifierFile.load(path)
    loaded.check_names(["cat", ("dog", "puppy")])
    loaded.check_teacher("fp-test", source="the config's teacher")
    assert torch.allclose(loaded.embeddings, emb) and loaded.entries == ["cat", ["dog", "puppy"]]
    with pytest.raises(ValueError, match=str(path)):
        loaded.check_names(["cat", "cow"])
    with pytest.raises(ValueError, match=f"(?s){path}.*the config's teacher has 'other'"):
        loaded.check_teacher("other", source="the config's teacher")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ClassifierFile.load(tmp_path / "missing.pt")


def test_legacy_segmentor_text_file_loads_into_a_head(tmp_path):
    """A file in segmentors' former format (names or synonym lists + templates) serves a head
    unchanged."""
    path = tmp_path / "old.pt"
    emb = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    torch.save(
        {
            "names": ["a", ["b", "bee"], "c"],
            "embeddings": emb,
            "teacher_fingerprint": "fp-old",
            "templates": ["a photo of a {}."],
        },
        path,
    )
    head = MODELS.build(
        dict(
            type="TextFCNHead",
            in_channels=4,
            channels=4,
            text_embeddings=str(path),
            class_names=["a", ("b", "bee"), "c"],
        )
    )
    assert torch.equal(head.text_embeddings, emb) and head.num_classes == 3
    # checkpoints store this hash of the class entries: it must not change with the file format
    assert int(head.text_names_hash) == int(sha256_json(["a", ["b", "bee"], "c"])[:15], 16)
    with pytest.raises(ValueError, match="do not match"):
        MODELS.build(
            dict(
                type="TextFCNHead",
                in_channels=4,
                channels=4,
                text_embeddings=str(path),
                class_names=["a", "b", "c"],
            )
        )


def _fcn_head(tmp_path, names, **kwargs):
    path = tmp_path / "head_text.pt"
    emb = write_text_file(path, names)
    head = MODELS.build(
        dict(
            type="TextFCNHead",
            in_channels=4,
            channels=4,
            num_convs=0,
            concat_input=False,
            dropout_ratio=0.0,
            text_embeddings=str(path),
            class_names=names,
            **kwargs,
        )
    )
    with torch.no_grad():  # projection := identity
        head.conv_seg.weight.copy_(torch.eye(4)[:, :, None, None])
        head.conv_seg.bias.zero_()
    return head, emb


def test_text_head_logits_are_scaled_cosines(tmp_path):
    head, emb = _fcn_head(tmp_path, ["a", "b", "c"], temperature=0.5)
    feat = torch.randn(2, 4, 3, 5)
    logits = head([feat])
    expected = torch.einsum("bdhw,nd->bnhw", F.normalize(feat, dim=1), emb) / 0.5
    assert logits.shape == (2, 3, 3, 5)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_text_head_uses_the_shared_cosine_classifier(tmp_path):
    """The head's logits are distill.vocab's dense cosine logits, i.e. the detectors' row-wise
    cosine_logits at every pixel."""
    head, emb = _fcn_head(tmp_path, ["a", "b", "c"], temperature=0.07)
    feat = torch.randn(2, 4, 3, 5)
    logits = head.cls_seg(feat)
    pixels = head.pixel_embeddings(feat)
    assert torch.equal(logits, dense_cosine_logits(pixels, head.text_embeddings, temperature=0.07))
    rows = cosine_logits(
        pixels.permute(0, 2, 3, 1).reshape(-1, 4), head.text_embeddings, temperature=0.07
    )
    assert torch.allclose(logits, rows.view(2, 3, 5, 3).permute(0, 3, 1, 2), atol=1e-5)


def test_text_head_learned_background_is_label_zero(tmp_path):
    head, emb = _fcn_head(tmp_path, ["a", "b"], learned_background=True, temperature=1.0)
    assert head.num_classes == 3
    with torch.no_grad():
        head.background_embedding.copy_(torch.tensor([[3.0, 0.0, 0.0, 0.0]]))
    feat = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)
    logits = head([feat]).flatten()
    assert logits[0].item() == pytest.approx(1.0)  # cos(e1, normalize(3 e1))
    assert torch.allclose(logits[1:], emb[:, 0], atol=1e-6)


def test_text_head_num_classes_and_names_checked(tmp_path):
    path = tmp_path / "t.pt"
    write_text_file(path, ["a", "b"])
    with pytest.raises(ValueError, match="num_classes=5"):
        MODELS.build(
            dict(
                type="TextFCNHead",
                in_channels=4,
                channels=4,
                num_classes=5,
                text_embeddings=str(path),
            )
        )
    with pytest.raises(ValueError, match="do not match"):
        MODELS.build(
            dict(
                type="TextFCNHead",
                in_channels=4,
                channels=4,
                text_embeddings=str(path),
                class_names=["a", "c"],
            )
        )


def test_checkpoint_text_embeddings_must_match_the_file(tmp_path):
    def head(names, seed):
        path = tmp_path / f"t{seed}_{len(names)}_{names[-1]}.pt"
        write_text_file(path, names, seed=seed)
        return MODELS.build(
            dict(type="TextFCNHead", in_channels=4, channels=4, text_embeddings=str(path))
        )

    trained = head(["a", "b"], seed=0)
    state = trained.state_dict()
    head(["a", "b"], seed=0).load_state_dict(state)  # same file: fine
    other_vocab = head(["a", "c"], seed=1)  # open-vocabulary transfer
    other_vocab.load_state_dict(state)
    assert not torch.allclose(other_vocab.text_embeddings, trained.text_embeddings)
    with pytest.raises(ValueError, match="other text embeddings for the same classes"):
        head(["a", "b"], seed=2).load_state_dict(state)  # same names, other teacher


def test_train_excluded_classes_leave_the_label_set(tmp_path):
    head, _ = _fcn_head(
        tmp_path,
        ["a", "b", "c"],
        train_excluded_classes=[2],
        loss_decode=dict(type="CrossEntropyLoss", avg_non_ignore=True),
    )
    logits = torch.tensor([1.0, 0.5, 4.0]).view(1, 3, 1, 1).expand(1, 3, 2, 1).contiguous()
    samples = [sample(torch.tensor([[0], [2]]))]  # pixel 2 is excluded -> ignored
    loss = head.loss_by_feat(logits, samples)["loss_ce"]
    expected = F.cross_entropy(
        torch.tensor([[1.0, 0.5]]), torch.tensor([0])
    )  # class 2 out of the softmax
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_deeplabv2_and_lseg_heads_shapes(tmp_path):
    path = tmp_path / "t.pt"
    write_text_file(path, ["a", "b", "c"])
    v2 = MODELS.build(
        dict(type="TextDeepLabV2Head", in_channels=8, dilations=(1, 2), text_embeddings=str(path))
    )
    assert v2.channels == 4  # logits='dot': the features are the 4-d pixel embeddings
    assert v2([torch.randn(2, 8, 5, 5)]).shape == (2, 3, 5, 5)
    cosine = MODELS.build(
        dict(
            type="TextDeepLabV2Head",
            in_channels=8,
            channels=6,
            dilations=(1, 2),
            logits="cosine",
            text_embeddings=str(path),
        )
    )
    assert cosine([torch.randn(2, 8, 5, 5)]).abs().max() <= 1 / 0.07 + 1e-4
    lseg = MODELS.build(
        dict(
            type="LSegHead",
            in_channels=[4, 8],
            in_index=[0, 1],
            input_transform="multiple_select",
            channels=6,
            text_embeddings=str(path),
            norm_cfg=dict(type="BN"),
        )
    )
    out = lseg([torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)])
    assert out.shape == (2, 3, 8, 8)
    assert out.abs().max() <= 1 / 0.07 + 1e-4


# ----------------------------------------------------------------------------- utilities
def test_slide_inference_of_identity_is_identity():
    x = torch.randn(2, 3, 7, 9)
    out = slide_inference(lambda crop: crop, x, num_classes=3, crop_size=(4, 5), stride=(2, 3))
    assert torch.allclose(out, x, atol=1e-6)


def test_teacher_images_undo_normalization():
    pre = MODELS.build(
        dict(
            type="SegDataPreProcessor",
            mean=[10.0, 20.0, 30.0],
            std=[2.0, 3.0, 4.0],
            bgr_to_rgb=True,
        )
    )
    rgb = torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8)
    normalized = (rgb.float() - pre.mean) / pre.std
    assert torch.equal(teacher_images(normalized, pre), rgb)
    with pytest.raises(ValueError, match="bgr_to_rgb=True"):
        teacher_images(normalized, MODELS.build(dict(type="SegDataPreProcessor")))


def test_fill_placeholders_and_text_specs():
    cfg = Config(
        dict(
            data_root="<toy_world>",
            model=dict(
                decode_head=dict(text_embeddings="<work_dir>/t.pt", class_names=["a"]),
                items=["<toy_world>/x", ("<work_dir>",)],
            ),
        )
    )
    fill_placeholders(cfg, {"<toy_world>": "/w", "<work_dir>": "/out"})
    assert cfg.data_root == "/w" and cfg.model.decode_head.text_embeddings == "/out/t.pt"
    assert cfg.model["items"] == ["/w/x", ("/out",)]
    assert [where for where, _ in text_embedding_specs(cfg.model)] == ["model.decode_head"]


# ----------------------------------------------------------------------------- metric
def test_ov_seg_metric_hand_computed():
    metric = METRICS.build(dict(type="OVSegMetric", unseen_classes=["c"]))
    metric.dataset_meta = dict(classes=("bg", "b", "c"))
    pred = torch.tensor([[0, 1, 2, 2]])
    gt = torch.tensor([[0, 1, 1, 2]])
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    out = metric.evaluate(1)
    # IoU: bg 1/1, b 1/2, c 1/2 -> seen (bg, b) 75, unseen 50, hIoU 60
    assert out["mIoU_seen"] == pytest.approx(75.0)
    assert out["mIoU_unseen"] == pytest.approx(50.0)
    assert out["hIoU"] == pytest.approx(60.0)
    assert out["mIoU"] == pytest.approx(200 / 3, abs=0.01)


def test_ov_seg_metric_unknown_class_names():
    metric = METRICS.build(dict(type="OVSegMetric", unseen_classes=["zebra"]))
    metric.dataset_meta = dict(classes=("bg", "b"))
    with pytest.raises(ValueError, match="zebra"):
        metric.process(
            {},
            [
                dict(
                    pred_sem_seg=dict(data=torch.zeros(1, 1, 1)),
                    gt_sem_seg=dict(data=torch.zeros(1, 1, 1)),
                )
            ],
        )


# ----------------------------------------------------------------------------- dataset + validation
def make_seg_world(root, n=2, size=8, classes=("background", "a", "b")):
    (root / "seg").mkdir(parents=True)
    (root / "seg" / "classes.json").write_text(
        json.dumps({"classes": list(classes), "unseen": ["b"], "ignore_index": 255})
    )
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "seg" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(
                root / "images" / split / f"{i:06d}.png"
            )
            Image.fromarray((np.arange(size * size).reshape(size, size) % 3).astype(np.uint8)).save(
                root / "seg" / split / f"{i:06d}.png"
            )
    return root


PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="ValidateSegMap", num_classes=3),
    dict(type="PackSegInputs"),
]


def test_toy_seg_dataset_reads_classes_and_pairs(tmp_path):
    root = make_seg_world(tmp_path / "w")
    ds = DATASETS.build(
        dict(type="ToySegDataset", data_root=str(root), split="val", pipeline=PIPELINE)
    )
    assert ds.metainfo["classes"] == ("background", "a", "b")
    assert ds.metainfo["unseen_classes"] == ("b",)
    assert len(ds) == 2
    item = ds[1]
    assert item["data_samples"].gt_sem_seg.data.shape == (1, 8, 8)


def test_toy_seg_dataset_errors_name_the_file(tmp_path):
    root = make_seg_world(tmp_path / "w")
    (root / "seg" / "val" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000001.png"):
        DATASETS.build(dict(type="ToySegDataset", data_root=str(root), split="val"))
    with pytest.raises(ValueError, match="placeholder"):
        DATASETS.build(dict(type="ToySegDataset", data_root="<toy_world>"))
    with pytest.raises(ValueError, match="classes.json"):
        DATASETS.build(
            dict(type="ToySegDataset", data_root=str(root), metainfo=dict(classes=("x", "y", "z")))
        )


def test_validate_seg_map_errors_name_the_file(tmp_path):
    root = make_seg_world(tmp_path / "w")
    bad = root / "seg" / "train" / "000000.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(bad)  # label 7 outside [0, 3)
    ds = DATASETS.build(
        dict(type="ToySegDataset", data_root=str(root), split="train", pipeline=PIPELINE)
    )
    with pytest.raises(ValueError, match=r"000000\.png.*\[7\]"):
        ds[0]
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(bad)  # 8x6 label for an 8x8 image
    with pytest.raises(ValueError, match=r"000000\.png is 8x6"):
        ds[0]
    validate = TRANSFORMS.build(dict(type="ValidateSegMap", num_classes=3))
    with pytest.raises(ValueError, match="no label map"):
        validate(dict(img_path="x.png", seg_map_path="y.png"))
    assert validate(dict(img_path="x.png")) == dict(img_path="x.png")  # label-free inference passes


# ----------------------------------------------------------------------------- segmentors with a tiny teacher
PRE = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
)


def test_maskclip_segmentor_matches_teacher_pixel_logits(tmp_path):
    cfg = tiny_teacher_cfg(tmp_path)
    names = ["background", "circle", "square"]
    model = MODELS.build(
        dict(
            type="MaskCLIPSegmentor",
            teacher=cfg,
            class_names=names,
            templates="simple",
            data_preprocessor=dict(type="SegDataPreProcessor", bgr_to_rgb=True),
        )
    )
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    inputs = images.float()  # no mean/std: inputs are RGB 0..255
    samples = [sample(torch.zeros(32, 32)) for _ in range(2)]
    out = model.predict(inputs, samples)
    teacher = build_teacher_from_spec(TeacherSpec.from_mapping(cfg))
    ref = teacher.pixel_logits(
        images, teacher.text_classifier(names, templates="simple")
    )  # [2, 3, 4, 4]
    ref = F.interpolate(ref, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(out[0].pred_sem_seg.data[0], ref[0].argmax(0))
    assert torch.allclose(out[1].seg_logits.data, ref[1], atol=1e-5)
    with pytest.raises(RuntimeError, match="training-free"):
        model.loss(inputs, samples)


def _plus_model(tmp_path, **kwargs):
    text = tmp_path / "student_text.pt"
    write_text_file(text, ["a", "b", "c"], dim=16)
    return MODELS.build(
        dict(
            type="MaskCLIPPlusSegmentor",
            teacher=tiny_teacher_cfg(tmp_path),
            teacher_class_names=["background", "a", "b", "c"],
            templates="simple",
            data_preprocessor=PRE,
            backbone=dict(
                type="ResNetV1c",
                depth=18,
                stem_channels=8,
                base_channels=8,
                out_indices=(3,),
                strides=(1, 2, 2, 1),
                dilations=(1, 1, 1, 1),
            ),
            decode_head=dict(
                type="TextFCNHead",
                in_channels=64,
                in_index=0,
                channels=8,
                num_convs=1,
                text_embeddings=str(text),
                learned_background=True,
                loss_decode=dict(type="CrossEntropyLoss", avg_non_ignore=True),
            ),
            test_cfg=dict(mode="whole"),
            **kwargs,
        )
    )


def test_maskclip_plus_targets_teacher_then_self_training(tmp_path):
    model = _plus_model(tmp_path, unseen_classes=[2, 3], self_training_start=1)
    gt = torch.tensor([0, 1, 2, 3]).repeat_interleave(8).view(1, 32).expand(32, 32)
    samples = [sample(gt)]
    inputs = torch.randn(1, 3, 32, 32)
    seg_logits = torch.randn(1, 4, 8, 8)
    unseen = gt >= 2
    targets = model.compute_targets(inputs, seg_logits, samples)[0]
    assert torch.equal(targets[~unseen], gt[~unseen])  # seen GT kept
    teacher_best = model.teacher_scores(inputs)[0].argmax(0) + 2
    assert torch.equal(targets[unseen], teacher_best[unseen])  # teacher over unseen
    losses = model.loss(inputs, samples)
    assert math.isfinite(float(losses["decode.loss_ce"].detach())) and int(model.train_iter) == 1
    assert model.self_training
    targets = model.compute_targets(inputs, seg_logits, samples)[0]
    student = F.interpolate(seg_logits, size=(32, 32), mode="bilinear")[0, 2:].argmax(0) + 2
    assert torch.equal(targets[unseen], student[unseen]) and torch.equal(
        targets[~unseen], gt[~unseen]
    )
    assert "train_iter" in model.state_dict() and not any(
        k.startswith("teacher") for k in model.state_dict()
    )


def test_maskclip_plus_teacher_is_lazy_and_outside_the_module_tree(tmp_path):
    model = _plus_model(tmp_path, unseen_classes=[2, 3])
    assert model.teacher.built_devices == []  # nothing built yet
    teacher = model.teacher.get(torch.device("cpu"))
    assert model.teacher.get("cpu") is teacher and model.teacher.built_devices == ["cpu"]
    names = [
        *model.state_dict(),
        *(n for n, _ in model.named_parameters()),
        *(n for n, _ in model.named_modules()),
    ]
    assert not any(n.startswith("teacher") for n in names)
    twin = copy.deepcopy(model)  # copies rebuild lazily
    assert twin.teacher.built_devices == [] and twin.teacher.spec == model.teacher.spec
    assert twin.teacher.get("cpu") is not teacher
    assert twin.teacher.get("cpu").fingerprint == teacher.fingerprint


def test_maskclip_plus_annotation_free_ignores_gt_but_not_padding(tmp_path):
    model = _plus_model(tmp_path, annotation_free=True)
    gt = torch.full((32, 32), 255)
    samples = [sample(gt)]
    samples[0].set_metainfo(dict(img_shape=(32, 24)))  # 8 columns of padding
    targets = model.compute_targets(torch.randn(1, 3, 32, 32), torch.randn(1, 4, 8, 8), samples)[0]
    assert bool((targets[:, :24] < 4).all()) and bool((targets[:, 24:] == 255).all())
    with pytest.raises(ValueError, match="unseen_classes"):
        _plus_model(tmp_path)


# ----------------------------------------------------------------------------- official recipes (issue 15)
REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "seg"
VOC20_CONFIG = REPO_CONFIGS / "voc" / "maskclip_vit-b16_voc12aug-20.py"


def test_key_smoothing_normalizes_keys_over_locations_by_default():
    """Official ``F.normalize(k)`` on ``k [N, HW, C]`` normalizes dim 1 (the locations)."""
    from distill.teachers.maskclip import key_smoothing

    keys = torch.tensor([3.0, 4.0]).view(1, 1, 1, 2)  # one key channel, two locations
    logits = torch.tensor([[0.01, 0.00], [0.00, 0.02]]).view(1, 2, 1, 2)
    a, b = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(2))  # softmax(100 * logits)[class 0]
    p0, p1 = torch.tensor([a, 1 - a]), torch.tensor([b, 1 - b])
    # spatial: k_n = [0.6, 0.8] -> affinity [[0.36, 0.48], [0.48, 0.64]]
    got = key_smoothing(logits, keys, threshold=1.0).flatten(2)[0].T
    assert torch.allclose(got[0], 0.36 * p0 + 0.48 * p1, atol=1e-6)
    assert torch.allclose(got[1], 0.48 * p0 + 0.64 * p1, atol=1e-6)
    # the channel option: one channel -> every key is 1 -> affinity of ones
    channel = key_smoothing(logits, keys, threshold=1.0, key_norm="channel").flatten(2)[0].T
    assert torch.allclose(channel[0], p0 + p1, atol=1e-6)


def test_maskclip_models_default_to_spatial_key_norm(tmp_path):
    model = MODELS.build(
        dict(type="MaskCLIPSegmentor", teacher=tiny_teacher_cfg(tmp_path), class_names=["a"])
    )
    assert model.key_norm == "spatial"
    plus = _plus_model(tmp_path, unseen_classes=[2, 3])
    assert plus.refine["key_norm"] == "spatial"


def _write_voc(root, label: np.ndarray) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((*label.shape, 3), np.uint8)).save(root / "JPEGImages" / "x.jpg")
    Image.fromarray(label.astype(np.uint8)).save(root / "SegmentationClass" / "x.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("x\n")


def test_voc20_maskclip_config_ignores_background(tmp_path):
    """The official 49.5 protocol: 20 classes, background -> 255 (ignored), k -> k - 1, KS/PD off,
    whole-image inference at short side 512."""
    cfg = Config.fromfile(str(VOC20_CONFIG))
    label = np.array([[0, 1, 15], [20, 255, 0]])  # background, aeroplane, person / tvmonitor, void
    _write_voc(tmp_path, label)
    ds_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    ds_cfg.data_root = str(tmp_path)
    dataset = DATASETS.build(ds_cfg)
    assert type(dataset).__name__ == "PascalVOCDataset20"
    assert len(dataset.metainfo["classes"]) == 20 and dataset.metainfo["classes"][0] == "aeroplane"
    gt = dataset[0]["data_samples"].gt_sem_seg.data[0]
    assert gt.tolist() == [[255, 0, 14], [19, 255, 255]]
    assert {"type": "Resize", "scale": (2048, 512), "keep_ratio": True} in cfg.test_pipeline
    model = cfg.model
    assert model.type == "MaskCLIPSegmentor" and model.test_cfg == {"mode": "whole"}
    assert model.key_smoothing is None and model.prompt_denoise is None
    assert len(model.class_names) == 20 and "background" not in model.class_names
    kspd = Config.fromfile(str(REPO_CONFIGS / "voc" / "maskclip_vit-b16_voc12aug-20_kspd.py"))
    assert (kspd.model.key_smoothing, kspd.model.prompt_denoise) == (1.0, 0.5)
    assert kspd.model.key_norm == "spatial" and kspd.model.test_cfg == {"mode": "whole"}
    with pytest.raises(ValueError, match="reduce_zero_label must be True"):
        DATASETS.build(dict(ds_cfg, reduce_zero_label=False))


def test_dot_head_logits_are_unnormalized_dot_products(tmp_path):
    """MaskCLIP+ (norm_feat=False): logits = feat . text, no projection / norm / temperature;
    the learned background is normalized, the features are not."""
    path = tmp_path / "t.pt"
    emb = write_text_file(path, ["a", "b"], dim=2)
    head = MODELS.build(
        dict(
            type="TextDeepLabV2Head",
            in_channels=3,
            dilations=(1,),
            text_embeddings=str(path),
            learned_background=True,
        )
    )
    assert head.channels == 2 and head.dropout is None and head.temperature is None
    with torch.no_grad():
        head.background_embedding.copy_(torch.tensor([[0.0, 5.0]]))
    feat = torch.tensor([[3.0, 0.0], [1.0, -2.0]]).T.reshape(1, 2, 1, 2)  # pixels (3, 0), (1, -2)
    logits = head.cls_seg(feat)[0, :, 0].T  # [pixel, class]
    expected = torch.tensor([[0.0, *(3 * emb[:, 0])], [-2.0, *(emb[:, 0] - 2 * emb[:, 1])]])
    assert torch.allclose(logits, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no temperature"):
        MODELS.build(
            dict(
                type="TextDeepLabV2Head", in_channels=3, text_embeddings=str(path), temperature=1.0
            )
        )
    with pytest.raises(ValueError, match="must equal the text dimension"):
        MODELS.build(
            dict(type="TextDeepLabV2Head", in_channels=3, channels=5, text_embeddings=str(path))
        )


def test_deeplabv2_branches_are_conv_bn_relu_summed(tmp_path):
    """ASPPHeadV2: ConvModule(conv + norm + act) per dilation (1x1 for dilation 1), summed."""
    path = tmp_path / "t.pt"
    emb = write_text_file(path, ["a", "b", "c"], dim=4)
    head = MODELS.build(
        dict(
            type="TextDeepLabV2Head",
            in_channels=3,
            dilations=(1, 2),
            text_embeddings=str(path),
            norm_cfg=dict(type="BN"),
            act_cfg=dict(type="ReLU"),
        )
    ).eval()
    one, two = head.branches
    assert one.conv.kernel_size == (1, 1) and one.conv.padding == (0, 0)
    assert two.conv.kernel_size == (3, 3) and two.conv.dilation == (2, 2)
    x = torch.randn(2, 3, 5, 5)
    feat = sum(F.relu(b.bn(b.conv(x))) for b in (one, two))
    assert torch.allclose(head([x]), torch.einsum("bdhw,nd->bnhw", feat, emb), atol=1e-5)


def test_maskclip_plus_real_configs_follow_the_official_zero_shot_recipe(tmp_path):
    """RN50 teacher, official ASPP head, VOC-20 setting, Context optimiser."""
    configs = {
        "voc20": "voc/maskclip_plus_r50_deeplabv2_r101-d8_512x512_20k_voc12aug-20.py",
        "voc21": "voc/maskclip_plus_r50_deeplabv2_r101-d8_512x512_20k_voc12aug.py",
        "anno_free": "voc/maskclip_plus_r50_deeplabv2_r101-d8_512x512_2k_voc12aug-20_anno-free.py",
        "context": "context/maskclip_plus_r50_deeplabv3plus_r101-d8_480x480_40k_context60.py",
        "stuff": "coco_stuff/maskclip_plus_r50_deeplabv2_r101-d8_512x512_80k_coco-stuff164k.py",
    }
    cfgs = {k: Config.fromfile(str(REPO_CONFIGS / v)) for k, v in configs.items()}
    for name, cfg in cfgs.items():
        assert cfg.teacher.model_name == "RN50" == cfg.model.teacher.model_name, name
        head = cfg.model.decode_head
        assert head.logits == "dot" and "temperature" not in head and "channels" not in head, name
        assert head.dropout_ratio == 0.0 and head.norm_cfg["type"] == "SyncBN", name
        assert cfg.model.get("key_smoothing") is None is cfg.model.get("prompt_denoise"), name
    voc20 = cfgs["voc20"]
    assert voc20.train_dataloader.dataset.datasets[0].type == "PascalVOCDataset20"
    assert voc20.test_dataloader.dataset.type == "PascalVOCDataset20"
    assert voc20.model.unseen_classes == [15, 16, 17, 18, 19]
    assert voc20.model.decode_head.num_classes == 20
    assert not voc20.model.decode_head.get("learned_background", False)
    assert cfgs["voc21"].model.decode_head.learned_background
    free = cfgs["anno_free"]
    assert free.model.unseen_classes == list(range(20)) and free.model.self_training_start is None
    assert free.train_cfg.max_iters == 2000
    opt = cfgs["context"].optim_wrapper.optimizer
    assert (opt.lr, opt.weight_decay) == (0.004, 0.0001)
    assert cfgs["voc20"].optim_wrapper.optimizer.lr == 0.01
    # the head builds with channels = the RN50 text dimension
    head_cfg = copy.deepcopy(voc20.model.decode_head)
    head_cfg.update(text_embeddings=str(tmp_path / "t.pt"), norm_cfg=dict(type="BN"))
    write_text_file(tmp_path / "t.pt", head_cfg.class_names, dim=1024)
    assert MODELS.build(head_cfg).channels == 1024


def test_lseg_text_embeddings_are_raw_names(tmp_path):
    """LSeg: clip.tokenize(labels), no templates; ViT-B/32 text encoder for the real config."""
    from segmentors.runner import ensure_text_embedding_files

    real = Config.fromfile(str(REPO_CONFIGS / "voc" / "lseg_r101_512x512_20k_voc12aug.py"))
    assert real.teacher.model_name == "ViT-B-32" and real.text_templates == ["{}"]
    toy = Config.fromfile(str(REPO_CONFIGS / "toy" / "lseg.py"))
    assert toy.text_templates == ["{}"]
    teacher_cfg = tiny_teacher_cfg(tmp_path)
    teacher = build_teacher_from_spec(TeacherSpec.from_mapping(teacher_cfg))
    names = ["circle", "empty background"]
    path = tmp_path / "text.pt"
    ClassifierFile.from_entries(  # same teacher and names, made with the "simple" template
        names,
        teacher.text_classifier(names, templates="simple", cache=False),
        teacher_fingerprint=teacher.fingerprint,
        provenance={"templates": "simple"},
    ).save(path)
    cfg = Config(
        dict(
            teacher=teacher_cfg,
            text_templates=toy.text_templates,
            model=dict(decode_head=dict(text_embeddings=str(path), class_names=names)),
        )
    )
    assert ensure_text_embedding_files(cfg) == [path]  # recomputed: other templates
    stored = ClassifierFile.load(path)
    raw = F.normalize(teacher.encode_text(names).float(), dim=1)
    assert torch.allclose(stored.embeddings, raw, atol=1e-5)
    assert stored.provenance["templates"] == ["{}"]
