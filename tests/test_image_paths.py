"""LVIS-v1 image entries (``coco_url``, no ``file_name``) through every reader of image files: the
one path resolution (``distill.data.image_path``), the region precompute, online region targets,
and Detectron2 dataset loading + the training mapper."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distill.cache import EmbeddingStore, precompute_region_embeddings
from distill.data import decode_image, image_path, read_image_records
from distill.targets import OnlineRegionTargets

URL = "http://images.cocodataset.org/train2017/{}"


def _lvis_style(root: Path, *, nested: bool) -> tuple[Path, Path]:
    """The tiny dataset with LVIS-v1 image entries; files under ``<root>/train2017/`` (Detectron2's
    COCO layout, ``nested``) or directly in the image root."""
    pytest.importorskip("detectron2")  # the tiny dataset writer lives in detectors.testing
    from detectors.testing import write_tiny_dataset

    json_path, images = write_tiny_dataset(root / "src", num_images=3, size=32, base_only=True)
    data = json.loads(json_path.read_text())
    image_root = root / "coco"
    target = image_root / "train2017" if nested else image_root
    target.mkdir(parents=True)
    for info in data["images"]:
        shutil.copy(images / info["file_name"], target / info["file_name"])
        info["coco_url"] = URL.format(info.pop("file_name"))
    lvis_json = root / "lvis_v1_train.json"
    lvis_json.write_text(json.dumps(data))
    return lvis_json, image_root


@pytest.mark.parametrize("nested", [True, False])
def test_image_path_resolves_coco_url_in_both_layouts(tmp_path, nested):
    lvis_json, image_root = _lvis_style(tmp_path, nested=nested)
    records = read_image_records(lvis_json, image_root)
    expected = image_root / "train2017" if nested else image_root
    assert [r.file for r in records] == [expected / f"{i:04d}.png" for i in (1, 2, 3)]
    assert decode_image(records[0].file).shape == (32, 32, 3)
    assert image_path({"id": 5, "file_name": "a/b.jpg"}, "root") == Path("root/a/b.jpg")


def test_image_without_file_name_or_coco_url_is_named(tmp_path):
    with pytest.raises(ValueError, match="image id 7 has neither 'file_name' nor a 'coco_url'"):
        image_path({"id": 7, "height": 4, "width": 4}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"000000000001\.jpg \(image id 1\) does not exist"):
        entry = {"id": 1, "coco_url": URL.format("000000000001.jpg")}
        decode_image(image_path(entry, tmp_path), image_id=1)


class _MeanColour:
    """A teacher embedding each box by its mean colour (``region_embeddings`` interface)."""

    fingerprint, embed_dim = "mean-colour", 3

    def region_embeddings(self, images, boxes, **kwargs):
        import torch

        out = []
        for image, bx in zip(images, boxes):
            rows = [
                image[:, int(b[1]) : int(b[3]), int(b[0]) : int(b[2])].float().mean((1, 2))
                for b in bx
            ]
            out.append(torch.nn.functional.normalize(torch.stack(rows), dim=-1))
        return out


@pytest.mark.parametrize("nested", [True, False])
def test_precompute_and_online_targets_read_lvis_images(tmp_path, nested):
    lvis_json, image_root = _lvis_style(tmp_path, nested=nested)
    teacher = _MeanColour()
    store = EmbeddingStore.open(
        precompute_region_embeddings(
            teacher, lvis_json, image_root, tmp_path / "store", source="gt", progress=False
        )
    )
    online = OnlineRegionTargets.from_coco_json(
        teacher, lvis_json, image_root, mode="crop", scales=(1.0,)
    )
    for image_id in (1, 2, 3):
        boxes, embeddings = store.get(image_id)
        targets = online.get(image_id)
        np.testing.assert_array_equal(boxes, targets.boxes)
        np.testing.assert_allclose(embeddings.astype(np.float32), targets.embeddings, atol=1e-3)


@pytest.mark.parametrize("nested", [True, False])
def test_detectron2_dataset_and_mapper_read_lvis_images(tmp_path, nested):
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from detectors.data import OVDatasetMapper, check_image_files, register_ov_dataset
    from detectors.testing import tiny_vild_config, write_random_text_embeddings

    lvis_json, image_root = _lvis_style(tmp_path, nested=nested)
    files = image_root / "train2017" if nested else image_root
    name = f"lvis_style_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, lvis_json, image_root, base_only=True, evaluator_type="ov_lvis")
    try:
        dicts = DatasetCatalog.get(name)
        assert [d["file_name"] for d in dicts] == [str(files / f"{i:04d}.png") for i in (1, 2, 3)]
        check_image_files(dicts, dataset=name)
        names = ["red box", "green box", "blue box"]
        text = write_random_text_embeddings(tmp_path / "text.pt", names)
        cfg = tiny_vild_config(
            train=name, test=name, text_embeddings=text, output_dir=tmp_path / "out"
        )
        mapped = OVDatasetMapper(cfg, True)(dicts[0])
        assert tuple(mapped["image"].shape) == (3, 64, 64) and len(mapped["instances"]) > 0
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
