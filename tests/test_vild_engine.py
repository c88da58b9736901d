"""OVTrainer's data side: region-target checks and bad inputs caught before training starts."""

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from detectors.data import class_balanced_repeats, register_ov_dataset  # noqa: E402
from detectors.engine import OVTrainer, build_region_targets  # noqa: E402
from detectors.host import check_detectron2_version, require_pinned_detectron2  # noqa: E402
from detectors.prepare import prepare_resources  # noqa: E402
from detectors.testing import (  # noqa: E402
    TINY_CLASSES,
    StubTeacher,
    tiny_vild_config,
    write_random_text_embeddings,
    write_tiny_dataset,
)
from distill.cache import EmbeddingStoreWriter  # noqa: E402
from distill.teachers import TEACHERS, register_teacher  # noqa: E402


def _store(root, image_ids, *, fingerprint, dim=16):
    writer = EmbeddingStoreWriter(
        root,
        {
            "teacher": "t",
            "teacher_fingerprint": fingerprint,
            "embed_dim": dim,
            "num_shards": 1,
            "num_images": len(image_ids),
        },
    )
    emb = np.ones((1, dim), np.float16) / np.sqrt(dim)
    writer.write_shard(0, [(i, np.array([[1, 1, 20, 20]], np.float32), emb) for i in image_ids])
    return str(root)


@pytest.fixture()
def setup(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path / "data", num_images=3, base_only=True)
    name = f"vild_engine_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(tmp_path / "text.pt", [c[0] for c in TINY_CLASSES])
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp_path / "out", distill=True
    )
    dicts = DatasetCatalog.get(name)
    yield cfg, dicts, tmp_path
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_cache_of_another_teacher_is_refused(setup):
    cfg, dicts, tmp = setup
    cfg.MODEL.VILD.DISTILL.CACHE = _store(
        tmp / "cache", [d["image_id"] for d in dicts], fingerprint="other-teacher"
    )
    with pytest.raises(ValueError, match="different teacher"):
        build_region_targets(cfg, dicts)


def test_cache_missing_images_error_or_skip(setup):
    cfg, dicts, tmp = setup
    cfg.MODEL.VILD.DISTILL.CACHE = _store(
        tmp / "cache", [dicts[0]["image_id"]], fingerprint="random-test-teacher"
    )
    with pytest.raises(ValueError, match="lacks 2 of the 3 images"):
        build_region_targets(cfg, dicts)
    cfg.MODEL.VILD.DISTILL.ON_MISSING = "skip"
    targets = build_region_targets(cfg, dicts)
    assert targets.get(dicts[1]["image_id"]).boxes.shape == (0, 4)
    batch = next(iter(OVTrainer.build_train_loader(cfg)))
    assert all("distill_boxes" in x for x in batch)


def test_missing_image_file_stops_before_training(setup):
    cfg, dicts, tmp = setup
    cfg.MODEL.VILD.DISTILL.ENABLED = False
    (tmp / "data" / "images" / "0002.png").unlink()
    with pytest.raises(FileNotFoundError, match="0002.png"):
        OVTrainer.build_train_loader(cfg)


def test_empty_text_embeddings_key_is_explained(setup):
    cfg, _, _ = setup
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = ""
    with pytest.raises(ValueError, match="TEXT_EMBEDDINGS is empty"):
        OVTrainer.build_model(cfg)


def test_prepare_resources_returns_a_resolved_clone_and_builds_no_teacher_needlessly(setup):
    """One ordered pass: the input config is left as is; existing files are used (the configured
    teacher, which could not even be built here, is never needed); the classifier must cover every
    class."""
    cfg, dicts, tmp = setup
    cfg.MODEL.VILD.DISTILL.CACHE = _store(
        tmp / "cache", [d["image_id"] for d in dicts], fingerprint="random-test-teacher"
    )
    cfg.MODEL.VILD.CLASSES.NAMES, cfg.MODEL.VILD.CLASSES.SEEN = [], []
    resolved = prepare_resources(cfg)
    assert list(cfg.MODEL.VILD.CLASSES.NAMES) == [] and resolved is not cfg
    assert list(resolved.MODEL.VILD.CLASSES.NAMES) == [c[0] for c in TINY_CLASSES]
    assert resolved.MODEL.VILD.DISTILL.CACHE == cfg.MODEL.VILD.DISTILL.CACHE
    assert resolved.MODEL.VILD.TEXT_EMBEDDINGS == cfg.MODEL.VILD.TEXT_EMBEDDINGS
    partial = write_random_text_embeddings(tmp / "partial.pt", ["red box", "green box"])
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(partial)
    with pytest.raises(KeyError, match="blue box"):
        prepare_resources(cfg)


def test_private_detectron2_members_need_the_pinned_version():
    require_pinned_detectron2("RPN._decode_proposals")  # the installed version is the pinned one
    expected = r"RPN._decode_proposals is a private member of Detectron2 0\.6, but Detectron2 0\.7"
    with pytest.raises(RuntimeError, match=expected):
        check_detectron2_version("0.7", member="RPN._decode_proposals")


def test_ground_truth_regions_never_include_novel_objects(tmp_path, monkeypatch):
    import json

    from detectors.data import regions_json

    monkeypatch.setenv("OVDISTILL_CACHE", str(tmp_path / "cache"))
    json_path, image_root = write_tiny_dataset(
        tmp_path / "data", num_images=6, seed=2
    )  # novel annotated
    assert any(a["category_id"] == 3 for a in json.loads(json_path.read_text())["annotations"])
    name = f"vild_engine_gt_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(tmp_path / "text.pt", [c[0] for c in TINY_CLASSES])
    cfg = tiny_vild_config(
        train=name, test=name, text_embeddings=text, output_dir=tmp_path, distill=True
    )
    cfg.MODEL.VILD.DISTILL.SOURCE = "gt"
    regions = json.loads(open(regions_json(cfg)).read())
    assert regions["annotations"] and all(
        a["category_id"] in (1, 2) for a in regions["annotations"]
    )
    cfg.MODEL.VILD.DISTILL.SOURCE = (
        "proposals"  # proposals are class-agnostic: the json is used as is
    )
    assert regions_json(cfg) == str(json_path)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


class _FingerprintStubTeacher(StubTeacher):
    """A registered stub whose ``MODEL_NAME`` is its fingerprint."""

    def __init__(self, *, model_name: str, precision: str, device: str = "cpu") -> None:
        super().__init__(fingerprint=model_name)
        self.precision, self.device = precision, device


def test_online_targets_use_the_checked_configured_teacher(setup):
    """``DISTILL.ONLINE``: the targets come from ``MODEL.VILD.TEACHER``, which must have made the
    text classifier (fingerprint checked before training, the error names both sides)."""
    cfg, dicts, _ = setup
    cfg.merge_from_list(
        [
            "MODEL.VILD.DISTILL.ONLINE",
            "True",
            "MODEL.VILD.DISTILL.SOURCE",
            "gt",
            "MODEL.VILD.TEACHER.NAME",
            "ovd-test-online-stub",
            "MODEL.VILD.TEACHER.MODEL_NAME",
            "another",
        ]
    )
    register_teacher("ovd-test-online-stub")(_FingerprintStubTeacher)
    try:
        with pytest.raises(ValueError, match=r"has fingerprint 'another'.*'random-test-teacher'"):
            build_region_targets(cfg, dicts)
        cfg.MODEL.VILD.TEACHER.MODEL_NAME = "random-test-teacher"
        targets = build_region_targets(cfg, dicts)
        assert targets.fingerprint == "random-test-teacher"
    finally:
        del TEACHERS["ovd-test-online-stub"]


def _total_grad_norm(model):
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


@pytest.mark.parametrize("clip_type", ["full_model", "norm"])
def test_full_model_gradient_clipping_clips_all_gradients_together(clip_type):
    """mmengine's clip_grad (ovdet OV-LVIS, max_norm 35, L2) clips the norm of ALL gradients:
    gradients 3 (weight [1, 2]: norm 3 sqrt 2) and 4 (bias) have total norm sqrt(34); clipped to
    1 they become 3 / sqrt(34) and 4 / sqrt(34). Detectron2's "norm" clips each tensor to 1 instead
    (total sqrt 2)."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 0.0, "SOLVER.MOMENTUM", 0.0, "SOLVER.WEIGHT_DECAY", 0.0])
    clip = cfg.SOLVER.CLIP_GRADIENTS
    clip.ENABLED, clip.CLIP_TYPE, clip.CLIP_VALUE, clip.NORM_TYPE = True, clip_type, 1.0, 2.0
    model = torch.nn.Linear(2, 1)
    optimizer = OVTrainer.build_optimizer(cfg, model)
    model.weight.grad = torch.full((1, 2), 3.0)
    model.bias.grad = torch.full((1,), 4.0)
    optimizer.step()
    if clip_type == "full_model":
        assert _total_grad_norm(model) == pytest.approx(1.0)
        assert model.bias.grad.item() == pytest.approx(4 / 34**0.5)
        assert model.weight.grad.flatten().tolist() == pytest.approx([3 / 34**0.5] * 2)
    else:  # Detectron2's per-parameter clip: not the official recipe
        assert _total_grad_norm(model) == pytest.approx(2**0.5)


def test_resumable_loader_applies_repeat_factors(setup):
    cfg, dicts, _ = setup
    cfg.MODEL.VILD.DISTILL.ENABLED = False
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 1.0
    loader = OVTrainer.build_train_loader(cfg)
    assert loader.repeats == class_balanced_repeats(dicts, repeat_thresh=1.0)
    assert max(loader.repeats) > 1  # some class is in fewer than all 3 images


def test_evaluation_scores_extra_test_classes_and_drops_their_detections(setup):
    """OVTrainer.test with MODEL.VILD.CLASSES.TEST_EXTRA_NAMES: the model classifies over the
    dataset's 3 classes + the extra one, the evaluator drops the extra class's detections, and the
    training vocabulary comes back afterwards. The extra class has green box's embedding, so each
    green detection has an extra-class twin (same box and score) that must be dropped."""
    from distill.vocab import ClassifierFile

    cfg, _, tmp = setup
    cfg.MODEL.VILD.DISTILL.ENABLED = False
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 100_000  # no top-k cut between a green box and its twin
    cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES = ["purple box"]
    rows = torch.nn.functional.normalize(
        torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    names = [*(c[0] for c in TINY_CLASSES), "purple box"]
    table = ClassifierFile.from_embeddings(
        names, torch.cat([rows, rows[1:2]]), teacher_fingerprint="random-test-teacher"
    )
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(table.save(tmp / "text_extra.pt"))
    model = OVTrainer.build_model(cfg)
    before = model.roi_heads.get_vocabulary()[1]
    evaluator = OVTrainer.build_evaluator(cfg, cfg.DATASETS.TEST[0])
    evaluator.distributed = False
    OVTrainer.test(cfg, model, evaluators=[evaluator])
    assert evaluator.extra_class_names == ("purple box",)
    green = [d for d in evaluator._predictions if d["category_id"] == 2]
    assert evaluator.num_dropped == len(green) > 0
    assert model.roi_heads.get_vocabulary()[1] == before
