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


def _layers(names=("cat", "dog", "cow"), seen=(True, True, False), dim=4, temperature=0.5):
    emb = torch.eye(dim)[: len(names)]
    return ViLDOutputLayers(
        ShapeSpec(channels=6),
        box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        class_embeddings=emb,
        class_names=list(names),
        seen=list(seen),
        temperature=temperature,
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
