"""distill.targets: cached and online teacher region targets, and their bad-input errors."""

import logging

import numpy as np
import pytest
import torch

from distill.cache import EmbeddingStoreWriter
from distill.targets import (
    CachedRegionTargets,
    OnlineRegionTargets,
    RegionTargetProvider,
    check_region_targets,
)


def _store(root, *, fingerprint="teacher-A", dim=4, images=(1, 2)):
    manifest = {
        "teacher": "t",
        "teacher_fingerprint": fingerprint,
        "embed_dim": dim,
        "num_shards": 1,
        "num_images": len(images),
    }
    writer = EmbeddingStoreWriter(root, manifest)
    entries = []
    for image_id in images:
        boxes = np.array([[0, 0, 4, 4], [1, 1, 3, 5]], np.float32) + image_id
        emb = np.full((2, dim), 0.5, np.float16) * image_id
        entries.append((image_id, boxes, emb))
    writer.write_shard(0, entries)
    return root


def test_cached_targets_roundtrip(tmp_path):
    targets = CachedRegionTargets(
        _store(tmp_path / "s"), expect_fingerprint="teacher-A", expect_embed_dim=4
    )
    assert isinstance(targets, RegionTargetProvider)
    assert targets.fingerprint == "teacher-A" and targets.embed_dim == 4
    boxes, emb = targets.get(2)
    assert boxes.dtype == np.float32 and emb.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[2, 2, 6, 6], [3, 3, 5, 7]])
    np.testing.assert_array_equal(emb, np.ones((2, 4)))


def test_cache_from_another_teacher_is_refused(tmp_path):
    root = _store(tmp_path / "s")
    with pytest.raises(ValueError, match="different teacher"):
        CachedRegionTargets(root, expect_fingerprint="teacher-B")
    with pytest.raises(ValueError, match="8"):
        CachedRegionTargets(root, expect_embed_dim=8)


def test_missing_entries_error_or_skip(tmp_path, caplog):
    root = _store(tmp_path / "s")
    strict = CachedRegionTargets(root)
    with pytest.raises(ValueError, match=r"lacks 2 of the 4 images.*\[3, 4\]"):
        strict.check_coverage([1, 2, 3, 4], dataset="toy")
    with pytest.raises(KeyError, match="image id 9"):
        strict.get(9)
    lenient = CachedRegionTargets(root, on_missing="skip")
    with caplog.at_level(logging.WARNING):
        assert lenient.check_coverage([1, 3]) == [3]
        boxes, emb = lenient.get(3)
    assert boxes.shape == (0, 4) and emb.shape == (0, 4)
    assert "lacks 1 of the 2 images" in caplog.text
    with pytest.raises(ValueError, match="on_missing"):
        CachedRegionTargets(root, on_missing="ignore")


def test_check_region_targets_errors():
    with pytest.raises(ValueError, match="image id 7.*\\[K, 4\\]"):
        check_region_targets(np.zeros((2, 3)), np.zeros((2, 4)), image_id=7, embed_dim=4)
    with pytest.raises(ValueError, match="2 boxes but 1 embeddings"):
        check_region_targets(np.zeros((2, 4)), np.zeros((1, 4)), image_id=7, embed_dim=4)
    with pytest.raises(ValueError, match="non-finite"):
        check_region_targets(np.full((1, 4), np.nan), np.zeros((1, 4)), image_id=7, embed_dim=4)


class MeanColourTeacher:
    """A real (tiny) teacher: a region's embedding is its normalized mean RGB colour."""

    fingerprint = "mean-colour"
    embed_dim = 3

    def __init__(self):
        self.calls = 0

    def region_embeddings(self, images, boxes, *, mode="crop", scales=(1.0,)):
        self.calls += 1
        out = []
        for image, bx in zip(images, boxes):
            rows = [
                image[:, int(b[1]) : int(b[3]), int(b[0]) : int(b[2])].float().mean((1, 2))
                for b in bx
            ]
            out.append(torch.nn.functional.normalize(torch.stack(rows), dim=-1))
        return out


def test_online_targets_compute_memoize_and_report(tmp_path):
    from detectors.testing import TINY_CLASSES, write_tiny_dataset

    json_path, image_root = write_tiny_dataset(tmp_path, num_images=2, size=32, seed=1)
    teacher = MeanColourTeacher()
    targets = OnlineRegionTargets.from_coco_json(
        teacher, json_path, image_root, mode="crop", scales=(1.0,)
    )
    assert isinstance(targets, RegionTargetProvider) and targets.fingerprint == "mean-colour"
    boxes, emb = targets.get(1)
    assert len(boxes) >= 1 and emb.shape == (len(boxes), 3)
    colours = [np.asarray(c) / np.linalg.norm(c) for _, _, c in TINY_CLASSES]
    # the rectangle drawn last (last annotation) is fully visible: its embedding is a pure class colour
    assert any(np.allclose(emb[-1], c, atol=1e-5) for c in colours)
    targets.get(1)
    assert teacher.calls == 1  # memoized
    with pytest.raises(KeyError, match="image id 99"):
        targets.get(99)
