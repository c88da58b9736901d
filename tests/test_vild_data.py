"""Open-vocabulary datasets, the region-target mapper and the resumable sampler."""

import itertools
import json
import logging

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402

from detectors.data import (  # noqa: E402
    OVDatasetMapper,
    ResumableTrainingSampler,
    check_image_files,
    get_ov_metadata,
    load_ov_json,
    register_ov_dataset,
    transform_region_boxes,
)
from detectors.testing import write_tiny_dataset  # noqa: E402
from distill.targets import RegionTargets  # noqa: E402


class FixedTargets:
    """A provider returning the same targets for every image."""

    fingerprint = "fixed"
    embed_dim = 3

    def __init__(self, boxes, embeddings):
        self.boxes, self.embeddings = (
            np.asarray(boxes, np.float32),
            np.asarray(embeddings, np.float32),
        )

    def get(self, image_id):
        return RegionTargets(self.boxes, self.embeddings)


def _unique(prefix):
    return f"{prefix}_{len(DatasetCatalog.list())}"


def test_transform_region_boxes_resize_and_flip():
    transforms = T.TransformList([T.ResizeTransform(32, 32, 64, 64), T.HFlipTransform(64)])
    boxes = np.array([[2, 4, 10, 20], [-5, -5, 0, 3], [30, 30, 40, 40], [5, 5, 5, 9]], np.float32)
    moved, keep = transform_region_boxes(
        boxes, transforms, original_size=(32, 32), image_size=(64, 64)
    )
    # box 1 is outside (zero area after clipping), box 2 is clipped to [30, 30, 32, 32], box 3 has zero width
    assert keep.tolist() == [True, False, True, False]
    np.testing.assert_allclose(moved, [[44, 8, 60, 40], [0, 60, 4, 64]])


def test_mapper_attaches_transformed_targets(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=1, size=32)
    record = load_ov_json(json_path, image_root)[0]
    cfg = get_cfg()
    from detectors import add_ovdistill_config

    add_ovdistill_config(cfg)
    targets = FixedTargets([[2, 4, 10, 20], [40, 40, 50, 50], [0, 0, 8, 8]], np.eye(3))
    mapper = OVDatasetMapper(
        True,
        augmentations=[T.ResizeTransform(32, 32, 64, 64), T.HFlipTransform(64)],
        image_format="RGB",
        region_targets=targets,
        distill_rois_per_image=300,
    )
    out = mapper(record)
    assert out["image"].shape == (3, 64, 64)
    torch.testing.assert_close(
        out["distill_boxes"], torch.tensor([[44.0, 8, 60, 40], [48, 0, 64, 16]])
    )
    torch.testing.assert_close(out["distill_embeddings"], torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    # at most distill_rois_per_image regions, drawn from NumPy's RNG
    mapper.distill_rois_per_image = 1
    np.random.seed(0)
    assert mapper(record)["distill_boxes"].shape == (1, 4)
    # inference drops annotations and targets
    test_mapper = OVDatasetMapper(False, augmentations=[], image_format="RGB")
    assert "distill_boxes" not in test_mapper(record) and "instances" not in test_mapper(record)


def test_load_ov_json_cleans_boxes_and_drops_novel(tmp_path, caplog):
    categories = [
        {"id": 1, "name": "cat", "split": "base"},
        {"id": 7, "name": "dog", "split": "novel"},
    ]
    anns = [
        {"id": 1, "image_id": 5, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {
            "id": 2,
            "image_id": 5,
            "category_id": 1,
            "bbox": [90, 90, 20, 20],
        },  # partly outside: clipped
        {"id": 3, "image_id": 5, "category_id": 1, "bbox": [10, 10, 0, 5]},  # zero area: dropped
        {"id": 4, "image_id": 5, "category_id": 1, "bbox": [200, 10, 5, 5]},  # outside: dropped
        {"id": 5, "image_id": 5, "category_id": 7, "bbox": [30, 30, 5, 5]},  # novel
    ]
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 5, "file_name": "a.png", "width": 100, "height": 100}],
                "annotations": anns,
                "categories": categories,
            }
        )
    )
    with caplog.at_level(logging.WARNING):
        (record,) = load_ov_json(path, tmp_path, base_only=True)
    boxes = [a["bbox"] for a in record["annotations"]]
    assert boxes == [[10.0, 10.0, 20.0, 20.0], [90.0, 90.0, 10.0, 10.0]]
    assert all(a["category_id"] == 0 for a in record["annotations"])
    text = caplog.text
    assert (
        "1 boxes partly outside the image clipped" in text and "1 zero-area boxes dropped" in text
    )
    assert (
        "1 boxes outside the image dropped" in text and "1 novel-class annotations dropped" in text
    )
    (record,) = load_ov_json(path, tmp_path)
    assert [a["category_id"] for a in record["annotations"]] == [0, 0, 1]


def test_duplicate_class_names_are_an_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps(
            {
                "images": [],
                "annotations": [],
                "categories": [
                    {"id": 1, "name": "Cat", "split": "base"},
                    {"id": 2, "name": "cat ", "split": "novel"},
                ],
            }
        )
    )
    with pytest.raises(ValueError, match="duplicate class names"):
        load_ov_json(path, tmp_path)


def test_registration_is_lazy_and_metadata_comes_from_the_json(tmp_path):
    missing = _unique("ov_missing")
    register_ov_dataset(missing, tmp_path / "nope.json", tmp_path)  # must not fail
    with pytest.raises(FileNotFoundError, match="nope.json"):
        DatasetCatalog.get(missing)
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=2)
    name = _unique("ov_tiny")
    register_ov_dataset(name, json_path, image_root, base_only=True)
    meta = get_ov_metadata(name)
    assert meta.thing_classes == ["red box", "green box", "blue box"]
    assert meta.class_roles == ["base", "base", "novel"]
    assert meta.base_class_ids == [1, 2] and meta.novel_class_ids == [3]
    assert all(
        a["category_id"] in (0, 1) for d in DatasetCatalog.get(name) for a in d["annotations"]
    )
    MetadataCatalog.remove(name)
    DatasetCatalog.remove(name)


def test_builtin_ov_coco_metadata_without_files():
    meta = get_ov_metadata("ov_coco_val")
    assert len(meta.thing_classes) == 65 and len(meta.novel_class_ids) == 17
    assert (
        "couch" in meta.thing_classes
        and meta.class_roles[meta.thing_classes.index("couch")] == "novel"
    )
    lvis = get_ov_metadata("ov_lvis_train_base")
    assert len(lvis.thing_classes) == 1203 and len(lvis.novel_class_ids) == 337


def test_missing_images_are_reported(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=3)
    dicts = load_ov_json(json_path, image_root)
    (image_root / "0002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 image files.*id 2"):
        check_image_files(dicts, dataset="tiny")


def test_resumable_sampler_is_a_pure_function_of_position():
    full = list(
        itertools.islice(iter(ResumableTrainingSampler(7, seed=3, rank=0, world_size=1)), 40)
    )
    assert sorted(full[:7]) == list(range(7)) and sorted(full[7:14]) == list(range(7))
    resumed = list(
        itertools.islice(
            iter(ResumableTrainingSampler(7, seed=3, start=12, rank=0, world_size=1)), 28
        )
    )
    assert resumed == full[12:]
    ranks = [
        list(
            itertools.islice(
                iter(ResumableTrainingSampler(7, seed=3, start=5, rank=r, world_size=2)), 10
            )
        )
        for r in (0, 1)
    ]
    # global position p goes to rank p % 2: position 5 to rank 1, 6 to rank 0, ...
    interleaved = [x for pair in zip(ranks[1], ranks[0]) for x in pair]
    assert interleaved == full[5:25]


def test_extra_test_classes_join_the_classifier_table_and_the_test_vocabulary(tmp_path):
    """MODEL.VILD.CLASSES.TEST_EXTRA_NAMES: encoded by the preparation step (class_table), appended
    to each test dataset's classes (dataset_vocabulary); missing rows or clashes are errors naming
    the file / key."""
    from detectors.config import add_ovdistill_config
    from detectors.data import class_table, dataset_vocabulary
    from detectors.testing import write_random_text_embeddings

    json_path, image_root = write_tiny_dataset(tmp_path, num_images=1)
    name = _unique("extra_vocab")
    register_ov_dataset(name, json_path, image_root)
    cfg = get_cfg()
    add_ovdistill_config(cfg)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), (name,)
    cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES = ["purple box"]
    names, synonyms = class_table(cfg)
    assert names == ["red box", "green box", "blue box", "purple box"]
    assert synonyms[-1] == ["purple box"]
    full = write_random_text_embeddings(tmp_path / "full.pt", ["purple box", *names[:3]])
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(full)
    embeddings, vocab = dataset_vocabulary(cfg, name)
    assert vocab == names and embeddings.shape == (4, 16)
    rows = torch.load(full, weights_only=False)["embeddings"]
    assert torch.allclose(embeddings[3], rows[0]) and torch.allclose(embeddings[0], rows[1])
    partial = write_random_text_embeddings(tmp_path / "partial.pt", names[:3])
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(partial)
    with pytest.raises(KeyError, match=r"partial\.pt.*TEST_EXTRA_NAMES.*purple box"):
        dataset_vocabulary(cfg, name)
    cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES = ["Red  Box"]
    with pytest.raises(ValueError, match="TEST_EXTRA_NAMES.*classes of test dataset"):
        dataset_vocabulary(cfg, name)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _dicts(categories_per_image):
    return [
        {"image_id": i, "annotations": [{"category_id": c} for c in cats]}
        for i, cats in enumerate(categories_per_image)
    ]


def test_class_balanced_repeats_are_mmdets_ceil_of_the_repeat_factor():
    """Category 0 in every image (f = 1), category 1 in one of 4 (f = 1/4). Threshold 0.5:
    r(1) = sqrt(0.5 / 0.25) = 1.41, so image 1 appears ceil(1.41) = 2 times in EVERY epoch
    (mmdet's ClassBalancedDataset; Detectron2's sampler would give it 1 or 2 times at random)."""
    from detectors.data import class_balanced_repeats

    dicts = _dicts([[0], [0, 1], [0], [0]])
    assert class_balanced_repeats(dicts, repeat_thresh=0.5) == [1, 2, 1, 1]
    sampler = ResumableTrainingSampler(4, seed=1, rank=0, world_size=1, repeats=[1, 2, 1, 1])
    stream = list(itertools.islice(iter(sampler), 50))
    for epoch in range(10):
        assert sorted(stream[5 * epoch : 5 * epoch + 5]) == [0, 1, 1, 2, 3]
    resumed = ResumableTrainingSampler(
        4, seed=1, start=13, rank=0, world_size=1, repeats=[1, 2, 1, 1]
    )
    assert list(itertools.islice(iter(resumed), 37)) == stream[13:]
    plain = ResumableTrainingSampler(4, seed=1, rank=0, world_size=1)
    assert list(itertools.islice(iter(plain), 8)) == list(
        itertools.islice(
            iter(ResumableTrainingSampler(4, seed=1, rank=0, world_size=1, repeats=[1, 1, 1, 1])), 8
        )
    )


def test_resumable_loader_reads_the_configured_sampler():
    """SOLVER.DETERMINISTIC_STEPS used to ignore DATALOADER.SAMPLER_TRAIN silently."""
    from detectors.data import resumable_repeats

    cfg = get_cfg()
    dicts = _dicts([[0], [0, 1], [0], [0]])
    assert resumable_repeats(cfg, dicts) is None  # TrainingSampler
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.5
    assert resumable_repeats(cfg, dicts) == [1, 2, 1, 1]
    cfg.DATALOADER.SAMPLER_TRAIN = "RandomSubsetTrainingSampler"
    with pytest.raises(ValueError, match="SAMPLER_TRAIN.*SOLVER.DETERMINISTIC_STEPS"):
        resumable_repeats(cfg, dicts)
