"""BARON's boxes cache (wusize/ovdet@d74a20c ``ovdet/methods/baron/boxes_cache.py``): frames of
the cached boxes, merge / threshold / NMS / top-k, the start counter, the mapper's image transform
and the heads' use of the cache (tiny model, generated images)."""

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from detectors.config import load_config  # noqa: E402
from detectors.data import OVDatasetMapper, load_ov_json, register_ov_dataset  # noqa: E402
from detectors.data.mapper import image_frame_transform  # noqa: E402
from detectors.modeling.boxes_cache import BoxesCache, to_image_frame  # noqa: E402
from detectors.testing import (  # noqa: E402
    TINY_CLASSES,
    StubTeacher,
    tiny_baron_config,
    write_random_text_embeddings,
    write_random_text_encoder,
    write_tiny_dataset,
)

IDENTITY = (1.0, 0.0, 1.0, 0.0)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_cached_box_comes_back_in_the_frame_of_a_flipped_rescaled_visit():
    """Original image 100 x 50. Visit 1: resized x2, no flip. Visit 2: resized x0.5 (50 x 25) and
    flipped: x' = -0.5 x + 50, y' = 0.5 y."""
    cache = BoxesCache(start_iter=1, topk=300, score_thresh=0.85, nms_thresh=0.1)
    boxes, scores = cache.merge(3, _t([[20, 10, 60, 50]]), _t([0.9]), (2.0, 0.0, 2.0, 0.0))
    assert boxes.tolist() == [[20, 10, 60, 50]]
    torch.testing.assert_close(cache.boxes[3], _t([[10, 5, 30, 25, 0.9]]))  # original frame
    boxes, scores = cache.merge(3, _t([[0, 0, 10, 10]]), _t([0.95]), (-0.5, 50.0, 0.5, 0.0))
    torch.testing.assert_close(boxes, _t([[0, 0, 10, 10], [35, 2.5, 45, 12.5]]))
    torch.testing.assert_close(scores, _t([0.95, 0.9]))
    # the current box written back in the original frame: x = (x' - 50) / -0.5
    torch.testing.assert_close(cache.boxes[3], _t([[80, 0, 100, 20, 0.95], [10, 5, 30, 25, 0.9]]))


def test_image_frame_transform_maps_boxes_like_the_transform_list():
    boxes = np.array([[2, 4, 10, 20], [0, 0, 31, 17]], np.float32)
    lists = [
        T.TransformList([T.ResizeTransform(32, 40, 48, 64), T.HFlipTransform(64)]),
        T.TransformList([T.ResizeTransform(32, 40, 64, 80), T.NoOpTransform()]),
        T.TransformList(
            [
                T.ResizeTransform(32, 40, 64, 80),
                T.CropTransform(8, 4, 40, 40),
                T.PadTransform(2, 3, 5, 5),
                T.VFlipTransform(48),
                T.HFlipTransform(47),
            ]
        ),
    ]
    for transforms in lists:
        expected = transforms.apply_box(boxes.copy())
        got = to_image_frame(torch.from_numpy(boxes), image_frame_transform(transforms))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-5)
    rotated = T.TransformList([T.RotationTransform(32, 32, 30.0)])
    assert image_frame_transform(rotated) is None


def test_merge_thresholds_nms_and_keeps_topk_in_the_cache():
    cache = BoxesCache(start_iter=1, topk=2, score_thresh=0.85, nms_thresh=0.1)
    a, b, c = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]
    d, e = [0, 0, 10, 11], [60, 60, 70, 70]  # d overlaps a (IoU 10/11)
    boxes, scores = cache.merge(1, _t([a, b, c, d, e]), _t([0.9, 0.95, 0.5, 0.88, 0.86]), IDENTITY)
    # c under the threshold, d suppressed by a; all survivors returned (no top-k on the output)
    assert boxes.tolist() == [b, a, e] and scores.tolist() == pytest.approx([0.95, 0.9, 0.86])
    torch.testing.assert_close(cache.boxes[1], _t([b + [0.95], a + [0.9]]))  # top 2
    f, g = [80, 80, 90, 90], [21, 21, 31, 31]  # g suppresses the cached b
    boxes, scores = cache.merge(1, _t([f, g]), _t([0.99, 0.97]), IDENTITY)
    assert boxes.tolist() == [f, g, a] and scores.tolist() == pytest.approx([0.99, 0.97, 0.9])
    torch.testing.assert_close(cache.boxes[1], _t([f + [0.99], g + [0.97]]))
    # nothing above the threshold (and an empty cache): the single best box (ovdet's argmax)
    boxes, scores = cache.merge(2, _t([a, b]), _t([0.3, 0.6]), IDENTITY)
    assert boxes.tolist() == [b] and scores.tolist() == pytest.approx([0.6])


def test_nothing_merged_or_cached_before_start_iter():
    cache = BoxesCache(start_iter=3, topk=300, score_thresh=0.85, nms_thresh=0.1)
    boxes, scores = _t([[0, 0, 10, 10], [1, 1, 11, 11]]), _t([0.5, 0.9])
    for _ in range(2):  # calls 1 and 2 (ovdet: iter += 1; iter < start_iter -> unchanged)
        out_boxes, out_scores = cache.merge(5, boxes, scores, IDENTITY)
        assert out_boxes is boxes and out_scores is scores and len(cache) == 0
    out_boxes, _ = cache.merge(5, boxes, scores, IDENTITY)  # call 3: merged, cache written
    assert out_boxes.tolist() == [[1, 1, 11, 11]] and len(cache) == 1 and cache.calls == 3


def test_mapper_puts_the_image_transform_in_training_dicts(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path, num_images=2, size=32)
    records = load_ov_json(json_path, image_root)
    mapper = OVDatasetMapper(
        True,
        augmentations=[T.ResizeTransform(32, 32, 64, 48), T.HFlipTransform(48)],
        image_format="RGB",
    )
    out = mapper(records[0])
    assert out["image"].shape == (3, 64, 48)
    assert out["image_transform"].tolist() == [-1.5, 48.0, 2.0, 0.0]
    # random resize + flip: the transform maps the annotations onto the mapped ground truth
    mapper = OVDatasetMapper(
        True,
        augmentations=[
            T.ResizeShortestEdge((40, 48, 56), 100, "choice"),
            T.RandomFlip(prob=0.5, horizontal=True),
        ],
        image_format="RGB",
    )
    torch.manual_seed(0)
    np.random.seed(0)
    for _ in range(4):
        for record in records:
            out = mapper(record)
            original = torch.tensor(
                [
                    [
                        a["bbox"][0],
                        a["bbox"][1],
                        a["bbox"][0] + a["bbox"][2],
                        a["bbox"][1] + a["bbox"][3],
                    ]
                    for a in record["annotations"]
                ]
            )
            torch.testing.assert_close(
                to_image_frame(original.double(), out["image_transform"]).float(),
                out["instances"].gt_boxes.tensor,
            )
    test_mapper = OVDatasetMapper(False, augmentations=[], image_format="RGB")
    assert "image_transform" not in test_mapper(records[0])


def test_configs_enable_the_cache_as_official():
    coco = load_config("baron_r50.yaml")
    assert coco.MODEL.BARON.BOXES_CACHE.ENABLED and coco.MODEL.BARON.BOXES_CACHE.START_ITER == 20000
    assert (coco.SOLVER.MAX_ITER, coco.SOLVER.IMS_PER_BATCH) == (90000, 32)  # ovdet 90kx2
    assert not load_config("baron_r50_lvis.yaml").MODEL.BARON.BOXES_CACHE.ENABLED
    assert not load_config("toy/baron.yaml").MODEL.BARON.BOXES_CACHE.ENABLED


@pytest.fixture()
def tiny(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path / "data", num_images=2, base_only=True)
    name = f"boxes_cache_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(tmp_path / "text.pt", [c[0] for c in TINY_CLASSES])
    encoder = write_random_text_encoder(tmp_path / "encoder.pt")
    yield name, text, encoder, tmp_path
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_baron_heads_merge_bag_centres_through_the_cache(tiny):
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    cfg.merge_from_list(["MODEL.BARON.BOXES_CACHE.ENABLED", True])
    cfg.merge_from_list(["MODEL.BARON.BOXES_CACHE.START_ITER", 3])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    model.roi_heads.set_teacher(StubTeacher())
    cache = model.roi_heads.boxes_cache
    assert isinstance(cache, BoxesCache) and (cache.topk, cache.score_thresh) == (20, 0.85)
    assert not any("boxes_cache" in k for k in model.state_dict())  # ovdet: not persistent
    mapper = OVDatasetMapper(cfg, True)
    meta = MetadataCatalog.get(name)
    batch = [mapper(d) for d in load_ov_json(meta.json_file, meta.image_root)]
    with EventStorage():
        model(batch)  # calls 1, 2: before start_iter
        assert cache.calls == 2 and len(cache) == 0
        model(batch)  # calls 3, 4: merged and cached
        assert cache.calls == 4 and set(cache.boxes) == {1, 2}
        del batch[0]["image_transform"]
        with pytest.raises(ValueError, match="image_transform"):
            model(batch)
