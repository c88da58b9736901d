"""ViLD's classifier, ensemble scoring and output layers (hand-computed values)."""

import math

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling.box_regression import Box2BoxTransform  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from detectors.modeling import ViLDOutputLayers, cosine_logits, ensemble_scores  # noqa: E402


def _layers(
    names=("cat", "dog", "cow"), seen=(True, True, False), dim=4, temperature=0.5, **kwargs
):
    emb = torch.eye(dim)[: len(names)]
    return ViLDOutputLayers(
        ShapeSpec(channels=6),
        box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        class_embeddings=emb,
        class_names=list(names),
        seen=list(seen),
        temperature=temperature,
        **kwargs,
    )


def test_cosine_logits_hand_computed():
    emb = torch.tensor([[1.0, 0.0]])
    classifier = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = cosine_logits(emb, classifier, temperature=0.5, background=torch.tensor([0.6, 0.8]))
    assert torch.allclose(logits, torch.tensor([[2.0, 0.0, 1.2]]))


def test_ensemble_scores_hand_computed():
    p_text = torch.tensor([[0.8, 0.1]])
    p_img = torch.tensor([[0.5, 0.4]])
    out = ensemble_scores(p_text, p_img, torch.tensor([True, False]), weight=2 / 3)
    expected = [0.8 ** (2 / 3) * 0.5 ** (1 / 3), 0.1 ** (1 / 3) * 0.4 ** (2 / 3)]
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_training_masks_unseen_classes_and_eval_does_not():
    layers = _layers()
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), dim=-1)
    layers.train()
    logits = layers.class_logits(emb)
    assert logits.shape == (1, 4)  # 3 classes + background
    assert math.isinf(logits[0, 2].item()) and logits[0, 2] < 0
    assert torch.isfinite(logits[0, [0, 1, 3]]).all()
    layers.eval()
    logits = layers.class_logits(emb)
    assert torch.isfinite(logits).all()
    assert logits[0, 2].item() == pytest.approx(emb[0, 2].item() / 0.5)


def test_cross_entropy_over_seen_classes_only():
    layers = _layers().train()
    x = torch.randn(5, 6)
    proposals = Instances(
        (32, 32),
        proposal_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10]] * 5)),
        gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10]] * 5)),
        gt_classes=torch.tensor([0, 1, 3, 3, 0]),
    )
    with EventStorage():
        losses = layers.losses(layers(x), [proposals])
    logits = layers.class_logits(layers.embed(x))[:, [0, 1, 3]]  # drop the masked class by hand
    manual = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 2, 0]))
    assert losses["loss_cls"].item() == pytest.approx(manual.item(), rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-2)


def test_annotation_of_unseen_class_is_an_error():
    layers = _layers().train()
    proposals = Instances(
        (32, 32),
        proposal_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10]])),
        gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10]])),
        gt_classes=torch.tensor([2]),
    )
    with EventStorage(), pytest.raises(ValueError, match="cow"):
        layers.losses(layers(torch.randn(1, 6)), [proposals])


def test_set_vocabulary_swaps_classes_without_touching_weights():
    layers = _layers().eval()
    before = {k: v.clone() for k, v in layers.state_dict().items()}
    assert "class_embeddings" not in before  # the vocabulary is not a weight
    new = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    layers.set_vocabulary(new, ["Dog", "zebra", "cat", "emu", "owl"])
    assert layers.num_classes == 5
    assert layers.seen.tolist() == [
        True,
        False,
        True,
        False,
        False,
    ]  # names of the training vocabulary
    assert layers(torch.randn(2, 6))[0].shape == (2, 6)
    assert all(torch.equal(before[k], v) for k, v in layers.state_dict().items())
    with pytest.raises(ValueError, match="duplicate"):
        layers.set_vocabulary(new[:2], ["emu", "EMU"])
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        layers.set_vocabulary(new[:2, :3], ["a", "b"])


def test_ensemble_probabilities_in_predict_probs():
    layers = _layers().eval()
    x = torch.randn(3, 6)
    image_emb = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    proposals = [Instances((32, 32), proposal_boxes=Boxes(torch.rand(3, 4) * 10))]
    (probs,) = layers.predict_probs(layers(x), proposals, image_embeddings=image_emb)
    text = torch.softmax(layers(x)[0], dim=-1)
    img = torch.softmax(layers.class_logits(image_emb, background=False), dim=-1)
    w = torch.tensor([2 / 3, 2 / 3, 1 / 3])
    expected = text[:, :3] ** w * img ** (1 - w)
    assert torch.allclose(probs[:, :3], expected, atol=1e-6)
    assert torch.allclose(probs[:, 3], text[:, 3])


def _one_foreground_in_five(layers: ViLDOutputLayers) -> dict:
    """Losses of 5 sampled RoIs, 1 foreground, all predicting deltas (0.5, 0, 2, 0) against a
    zero target (proposal = ground truth): Huber(delta 1) sum = 0.125 + 1.5 = 1.625."""
    with torch.no_grad():
        layers.bbox_pred.weight.zero_()
        layers.bbox_pred.bias.copy_(torch.tensor([0.5, 0.0, 2.0, 0.0]))
    box = torch.tensor([[0.0, 0, 10, 10]] * 5)
    proposals = Instances(
        (32, 32),
        proposal_boxes=Boxes(box),
        gt_boxes=Boxes(box.clone()),
        gt_classes=torch.tensor([0, 3, 3, 3, 3]),
    )
    with EventStorage():
        return layers.losses(layers(torch.randn(5, 6)), [proposals])


def test_box_loss_normalized_by_four_foreground_coordinates_as_vild():
    # tensorflow/tpu@7dc921f modeling/losses.py FastrcnnBoxLoss: SUM_BY_NONZERO_WEIGHTS over the
    # 4 coordinates of the foreground RoIs: 1.625 / (4 x 1); Detectron2: 1.625 / 5 sampled RoIs.
    vild = _layers(smooth_l1_beta=1.0, box_loss_normalizer="foreground_x4").train()
    assert _one_foreground_in_five(vild)["loss_box_reg"].item() == pytest.approx(1.625 / 4)
    detectron2 = _layers(smooth_l1_beta=1.0).train()  # default: "sampled", BARON's
    assert _one_foreground_in_five(detectron2)["loss_box_reg"].item() == pytest.approx(1.625 / 5)
    empty = vild.box_reg_loss(torch.zeros(0, 4), torch.zeros(0, 4), num_sampled=5)
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="BBOX_REG_LOSS_NORMALIZER"):
        _layers(box_loss_normalizer="foreground")


def test_zeroed_unseen_logits_stay_in_the_softmax_as_vild_lvis():
    # tensorflow/tpu@7dc921f projects/vild/modeling/vild_losses.py: class_outputs * rare_mask.
    layers = _layers(unseen_train_logits="zero").train()
    with torch.no_grad():
        layers.bg_embedding.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))  # cosine 0 with emb below
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), dim=-1)
    a = 2 / math.sqrt(3)  # cosine 1/sqrt(3) / temperature 0.5 for cat, dog, cow
    logits = layers.class_logits(emb)
    assert logits[0].tolist() == pytest.approx([a, a, 0.0, 0.0], abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0])).item()
    assert ce == pytest.approx(-math.log(math.exp(a) / (2 * math.exp(a) + 2)), rel=1e-6)
    removed = _layers().train()  # default "remove": cow's logit is -inf, out of the softmax
    with torch.no_grad():
        removed.bg_embedding.copy_(layers.bg_embedding)
    ce_removed = torch.nn.functional.cross_entropy(removed.class_logits(emb), torch.tensor([0]))
    assert ce_removed.item() == pytest.approx(-math.log(math.exp(a) / (2 * math.exp(a) + 1)))
    assert torch.isfinite(layers.eval().class_logits(emb)).all()
    assert layers.class_logits(emb)[0, 2].item() == pytest.approx(a)  # no mask at inference


def _box_head(config: str):
    from detectron2.modeling.roi_heads.box_head import build_box_head

    from detectors.config import load_config

    cfg = load_config(
        config, ["MODEL.ROI_BOX_HEAD.CONV_DIM", "3", "MODEL.ROI_BOX_HEAD.FC_DIM", "5"]
    )
    return cfg, build_box_head(cfg, ShapeSpec(channels=2, height=2, width=2))


def test_baron_coco_box_head_has_frozen_conv_bn_and_a_plain_fc():
    """ovdet's COCO Shared4Conv1FC: BN frozen in eval mode on the convs, no norm on the fc."""
    from detectron2.layers import FrozenBatchNorm2d

    _, head = _box_head("baron_r50.yaml")
    assert [type(c.norm) for c in head if hasattr(c, "norm")] == [FrozenBatchNorm2d] * 4
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in head.modules())
    assert [n for n, _ in head.named_children()] == [
        *(f"conv{k}" for k in range(1, 5)),
        "flatten",
        "fc1",
        "fc1_relu",
    ]
    head.train()
    x = torch.randn(3, 2, 2, 2)
    # hand computation: frozen BN with its initial statistics is the identity, convs have no bias
    y = x
    for k in range(1, 5):
        conv = getattr(head, f"conv{k}")
        assert conv.bias is None
        y = torch.relu(torch.nn.functional.conv2d(y, conv.weight, padding=1))
    expected = torch.relu(head.fc1(y.flatten(1)))
    torch.testing.assert_close(head(x), expected)
    assert head(x[:1]).shape == (1, 5)  # one region trains fine (no batch statistics)
    assert all(not p.requires_grad for c in head if hasattr(c, "norm") for p in c.norm.buffers())


def test_vild_box_head_keeps_normalized_fcs_and_lvis_baron_trains_its_bn():
    _, vild = _box_head("vild_r50.yaml")
    assert isinstance(vild.fc1_norm, torch.nn.SyncBatchNorm)
    assert isinstance(vild.conv1.norm, torch.nn.SyncBatchNorm)
    _, lvis = _box_head("baron_r50_lvis.yaml")  # ovdet LVIS: trainable SyncBN convs, plain fc
    assert isinstance(lvis.conv1.norm, torch.nn.SyncBatchNorm) and not hasattr(lvis, "fc1_norm")


def test_box_regressor_mlp_hand_computed():
    from detectors.modeling.box_head import build_box_regressor

    single = build_box_regressor(6, 4)
    assert isinstance(single, torch.nn.Linear)  # ViLD / old checkpoints: bbox_pred.weight
    mlp = build_box_regressor(6, 4, hidden_dims=[5])
    assert [type(m).__name__ for m in mlp] == ["Linear", "ReLU", "Linear"]
    assert all(float(m.weight.detach().std()) < 0.01 for m in mlp if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        mlp[0].weight.copy_(torch.arange(30.0).view(5, 6) / 30 - 0.5)
        mlp[0].bias.fill_(0.1)
        mlp[2].weight.copy_(torch.ones(4, 5))
        mlp[2].bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    x = torch.ones(1, 6)
    hidden = (torch.arange(30.0).view(5, 6) / 30 - 0.5).sum(1) + 0.1
    expected = hidden.clamp(min=0).sum() + torch.tensor([0.0, 1.0, 2.0, 3.0])
    torch.testing.assert_close(mlp(x)[0], expected)
    layers = _layers(reg_hidden_dims=[5])
    assert isinstance(layers.bbox_pred, torch.nn.Sequential)
    assert layers(torch.randn(2, 6))[1].shape == (2, 4)
    cfg, _ = _box_head("baron_r50.yaml")
    assert list(cfg.MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS) == [1024]
    cfg, _ = _box_head("vild_r50.yaml")
    assert list(cfg.MODEL.ROI_BOX_HEAD.REG_HIDDEN_DIMS) == []
