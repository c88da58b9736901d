"""ViLD student built through Detectron2's registries on a tiny dataset (CPU, random text embeddings)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from detectors.data import (  # noqa: E402
    OVDatasetMapper,
    load_ov_json,
    register_ov_dataset,
    resolve_training_classes,
)
from detectors.modeling import ViLDROIHeads  # noqa: E402
from detectors.testing import (  # noqa: E402
    TINY_CLASSES,
    tiny_vild_config,
    write_random_text_embeddings,
    write_tiny_dataset,
)
from distill.losses import l1_region_distill  # noqa: E402
from distill.targets import RegionTargets  # noqa: E402


class RandomTargets:
    fingerprint = "random-test-teacher"
    embed_dim = 16

    def get(self, image_id):
        rng = np.random.default_rng(int(image_id))
        boxes = np.array([[2, 2, 30, 30], [10, 20, 60, 50], [0, 0, 64, 64]], np.float32)
        emb = rng.normal(size=(3, 16)).astype(np.float32)
        return RegionTargets(boxes, emb / np.linalg.norm(emb, axis=1, keepdims=True))


@pytest.fixture()
def tiny(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path / "data", num_images=2, base_only=True)
    name = f"vild_model_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(
        tmp_path / "text.pt", [c[0] for c in TINY_CLASSES] + ["purple box"]
    )
    yield name, text, tmp_path
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _batch(cfg, name, targets=None):
    mapper = OVDatasetMapper(cfg, True, region_targets=targets)
    return [
        mapper(d)
        for d in load_ov_json(
            MetadataCatalog.get(name).json_file, MetadataCatalog.get(name).image_root
        )
    ]


def test_vild_distillation_pools_distill_boxes_with_the_rois(tiny):
    name, text, tmp = tiny
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp, distill=True, box_norm=""
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert isinstance(model.roi_heads, ViLDROIHeads)
    batch = _batch(cfg, name, RandomTargets())
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {
        "loss_cls",
        "loss_box_reg",
        "loss_distill",
        "loss_rpn_cls",
        "loss_rpn_loc",
    }
    # recompute the distillation term by hand: pool only the distill boxes (no batch norm in the head)
    heads = model.roi_heads
    with torch.no_grad():
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        pooled = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [Boxes(x["distill_boxes"]) for x in batch]
        )
        student = heads.box_predictor.embed(heads.box_head(pooled))
    teacher = torch.cat([x["distill_embeddings"] for x in batch])
    expected = 0.5 * l1_region_distill(student, teacher)
    assert losses["loss_distill"].item() == pytest.approx(expected.item(), rel=1e-4)
    losses["loss_distill"].backward()
    assert heads.box_predictor.projection.weight.grad.abs().sum() > 0


def test_missing_distill_targets_is_a_clear_error(tiny):
    name, text, tmp = tiny
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp, distill=True
    )
    model = build_model(cfg).train()
    with EventStorage(), pytest.raises(ValueError, match="distill_boxes"):
        model(_batch(cfg, name))


def test_ensemble_trains_its_own_branch_and_scores_with_both(tiny):
    name, text, tmp = tiny
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp, distill=True, ensemble=True
    )
    model = build_model(cfg).train()
    heads = model.roi_heads
    with EventStorage():
        losses = model(_batch(cfg, name, RandomTargets()))
    losses["loss_distill"].backward()
    assert heads.image_projection.weight.grad.abs().sum() > 0
    assert (
        heads.box_predictor.projection.weight.grad is None
    )  # the text branch gets no distillation
    model.eval()
    batch = [{"image": x["image"], "height": 64, "width": 64} for x in _batch(cfg, name)]
    with torch.no_grad():
        out = model(batch)
    instances = out[0]["instances"]
    assert len(instances) > 0 and int(instances.pred_classes.max()) < 3
    assert (instances.scores <= 1).all() and (instances.scores >= 0).all()


def test_vocabulary_swap_at_inference(tiny):
    name, text, tmp = tiny
    cfg = tiny_vild_config(train=name, test=name, text_embeddings=text, output_dir=tmp)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    assert heads.num_classes == 3 and heads.box_predictor.seen.tolist() == [True, True, False]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any("class_embeddings" in k for k in state)
    new = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1)
    heads.set_vocabulary(new, [f"thing {i}" for i in range(6)] + ["Red Box"])
    assert heads.box_predictor.seen.tolist() == [False] * 6 + [True]
    batch = [{"image": x["image"], "height": 64, "width": 64} for x in _batch(cfg, name)]
    with torch.no_grad():
        out = model(batch)
    assert int(out[0]["instances"].pred_classes.max()) <= 6
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    embeddings, names, seen = heads.get_vocabulary()
    assert names[-1] == "Red Box" and embeddings.shape == (7, 16) and seen[-1]


def test_model_is_built_from_its_config_alone(tmp_path):
    """The training vocabulary is resolved from the catalog on the data side (MODEL.VILD.CLASSES);
    the model reads only the config and the classifier file, not the dataset catalog."""
    json_path, image_root = write_tiny_dataset(tmp_path / "data", num_images=1, base_only=True)
    name = f"vild_model_catalog_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(tmp_path / "text.pt", [c[0] for c in TINY_CLASSES])
    cfg = tiny_vild_config(train=name, test=name, text_embeddings=text, output_dir=tmp_path)
    assert list(cfg.MODEL.VILD.CLASSES.NAMES) == [c[0] for c in TINY_CLASSES]
    assert list(cfg.MODEL.VILD.CLASSES.SEEN) == [True, True, False]
    stale = cfg.clone()
    stale.MODEL.VILD.CLASSES.NAMES = ["red box", "green box", "pink box"]
    with pytest.raises(ValueError, match="differ from the classes of DATASETS.TRAIN"):
        resolve_training_classes(stale)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    heads = build_model(cfg).roi_heads  # the dataset is gone: only the config and the file are read
    assert heads.box_predictor.class_names == [c[0] for c in TINY_CLASSES]
    assert heads.box_predictor.seen.tolist() == [True, True, False]
    unresolved = cfg.clone()
    unresolved.MODEL.VILD.CLASSES.NAMES, unresolved.MODEL.VILD.CLASSES.SEEN = [], []
    with pytest.raises(ValueError, match="MODEL.VILD.CLASSES.NAMES is empty"):
        build_model(unresolved)


def test_box_inference_with_a_given_classifier_is_the_vocabulary_swap(tiny):
    """``box_inference(classifier=, seen=)`` (what export traces) equals set_vocabulary +
    inference."""
    name, text, tmp = tiny
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp, ensemble=True
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = model.preprocess_image([{"image": x["image"]} for x in _batch(cfg, name)])
    training = model.roi_heads.get_vocabulary()
    model.roi_heads.set_vocabulary(torch.randn(3, 16), ["thing a", "Red Box", "thing b"])
    classifier, _, seen = model.roi_heads.get_vocabulary()
    assert seen.tolist() == [False, True, False]
    with torch.no_grad():
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        swapped = model.roi_heads.box_inference(features, proposals)
        model.roi_heads.set_vocabulary(training[0], training[1], seen=training[2])
        given = model.roi_heads.box_inference(features, proposals, classifier=classifier, seen=seen)
    for a, b in zip(given, swapped):
        assert len(a) > 0 and torch.equal(a.scores, b.scores)
        assert torch.equal(a.pred_classes, b.pred_classes)
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    with pytest.raises(ValueError, match="needs seen"):
        model.roi_heads.box_inference(features, proposals, classifier=classifier)


@pytest.mark.slow  # a fresh interpreter importing detectron2
def test_students_never_import_a_teacher():
    code = (
        "import sys, detectors, detectors.engine, detectors.modeling, detectors.data; "
        "bad = [m for m in ('open_clip', 'distill.teachers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("config", ["vild_r50.yaml", "vild_r50_lvis.yaml", "toy/vild.yaml"])
def test_vild_optimizer_decays_kernels_only(tiny, config):
    """ViLD's L2 regularization covers variables matching ``.*(kernel|weight):0$``
    (tensorflow/tpu@7dc921f configs/base_config.py): conv / linear weights and the background
    embedding decay, batch-norm gamma / beta and biases do not; Detectron2's build_optimizer."""
    from detectron2.solver import build_optimizer

    from detectors.config import load_config

    name, text, tmp = tiny
    model = build_model(
        tiny_vild_config(train=name, test=name, text_embeddings=text, output_dir=tmp / "out")
    )
    solver = load_config(config)
    decay = solver.SOLVER.WEIGHT_DECAY
    group_of = {
        id(p): g["weight_decay"]
        for g in build_optimizer(solver, model).param_groups
        for p in g["params"]
    }
    nn = torch.nn
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)
    seen = {"norm": 0, "bias": 0, "weight": 0}
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if isinstance(module, norm_types):
                kind = "norm"
            else:
                kind = "bias" if param_name == "bias" else "weight"
            seen[kind] += 1
            assert group_of[id(param)] == (decay if kind == "weight" else 0.0), (
                type(module).__name__,
                param_name,
            )
    assert all(seen.values()), seen
    assert group_of[id(model.roi_heads.box_predictor.bg_embedding)] == decay
