"""OVTrainer's data side: region-target checks and bad inputs caught before training starts."""

import numpy as np
import pytest

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from detectors.data import register_ov_dataset  # noqa: E402
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
