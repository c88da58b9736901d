"""Tests of the teacher-embedding store and its precompute (distill.cache)."""

from __future__ import annotations

import json
import logging
import pickle
import runpy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.cache import EmbeddingStore, EmbeddingStoreWriter, precompute_region_embeddings

W, H = 40, 30  # every generated image is W x H


class ColourTeacher:
    """Tiny deterministic stand-in teacher: [mean RGB of the (integer) crop, normalized box geometry], L2-normalized.

    ``fail_after`` makes the (n+1)-th ``region_embeddings`` call raise, simulating a crash mid-run.
    """

    embed_dim = 8

    def __init__(self, *, fingerprint: str = "colour-v1", fail_after: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.fail_after = fail_after
        self.calls = 0

    @staticmethod
    def embed_one(image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
        """Embedding ``[8]`` of one xyxy box of a uint8 ``[3, H, W]`` image."""
        height, width = image.shape[1:]
        x1, y1, x2, y2 = (float(v) for v in box)
        xa, ya = int(x1), int(y1)
        crop = image[:, ya : max(int(np.ceil(y2)), ya + 1), xa : max(int(np.ceil(x2)), xa + 1)]
        colour = crop.float().mean((1, 2)) / 255
        geometry = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height, 1.0])
        vector = torch.cat([colour, geometry])
        return vector / vector.norm()

    def region_embeddings(
        self,
        images: Sequence[torch.Tensor],
        boxes: Sequence[torch.Tensor],
        *,
        mode: str = "crop",
        scales: Sequence[float] = (1.0,),
    ) -> list[torch.Tensor]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        assert mode == "crop"
        out = []
        for image, image_boxes in zip(images, boxes):
            assert image.dtype == torch.uint8 and image.shape[0] == 3
            rows = [self.embed_one(image, b) for b in image_boxes.tolist()]
            out.append(torch.stack(rows) if rows else torch.zeros(0, self.embed_dim))
        return out


def make_dataset(root: Path, *, num_images: int = 7, seed: int = 0) -> tuple[Path, Path, dict]:
    """Images with random colour blocks and a COCO json; returns (json path, image dir, json dict).

    Image ids are shuffled in the json (the store must sort them). Image 3 has no annotation; image 2
    has a box reaching outside the image (clipped), a zero-width box and a box fully outside (both
    dropped) and a crowd box (skipped).
    """
    rng = np.random.default_rng(seed)
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    ann_id = 1
    for image_id in rng.permutation(np.arange(1, num_images + 1)).tolist():
        pixels = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        pixels[5:20, 10:30] = rng.integers(0, 256, size=3, dtype=np.uint8)
        name = f"{image_id:06d}.png"
        Image.fromarray(pixels).save(image_dir / name)
        images.append({"id": image_id, "file_name": name, "width": W, "height": H})
        if image_id == 3:
            continue
        bboxes = [[1.5, 2.0, 10.0, 8.0], [10.0, 5.0, 20.0, 15.0], [float(image_id), 1.0, 5.0, 6.0]]
        if image_id == 2:
            bboxes += [[35.0, 25.0, 20.0, 20.0], [5.0, 5.0, 0.0, 4.0], [50.0, 40.0, 5.0, 5.0]]
        for bbox in bboxes:
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "bbox": bbox,
                    "category_id": 1,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
        if image_id == 2:
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": 2,
                    "bbox": [0.0, 0.0, 30.0, 30.0],
                    "category_id": 1,
                    "area": 900.0,
                    "iscrowd": 1,
                }
            )
            ann_id += 1
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    json_path = root / "instances.json"
    json_path.write_text(json.dumps(data))
    return json_path, image_dir, data


def expected_gt_boxes(data: dict, image_id: int) -> np.ndarray:
    """Hand-written expectation: xywh -> xyxy, clip to W x H, drop empty, skip crowd, annotation-id order."""
    rows = []
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        if ann["image_id"] != image_id or ann["iscrowd"]:
            continue
        x, y, w, h = ann["bbox"]
        x1, y1, x2, y2 = (
            min(max(x, 0), W),
            min(max(y, 0), H),
            min(max(x + w, 0), W),
            min(max(y + h, 0), H),
        )
        if x2 > x1 and y2 > y1:
            rows.append([x1, y1, x2, y2])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def load_image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path, dict]:
    return make_dataset(tmp_path / "data")


def run(teacher, dataset, out: Path, **kwargs) -> Path:
    json_path, image_dir, _ = dataset
    kwargs.setdefault("images_per_shard", 2)
    kwargs.setdefault("batch_images", 1)
    return precompute_region_embeddings(
        teacher, json_path, image_dir, out, progress=False, **kwargs
    )


def test_round_trip_gt(dataset, tmp_path):
    _, image_dir, data = dataset
    teacher = ColourTeacher()
    store = EmbeddingStore.open(run(teacher, dataset, tmp_path / "store", batch_images=3))
    assert store.image_ids == list(range(1, 8))  # sorted although shuffled in the json
    assert store.manifest["teacher"] == "ColourTeacher" and store.manifest["embed_dim"] == 8
    assert store.manifest["source"] == "gt" and store.manifest["num_shards"] == 4
    assert store.manifest["scales"] == [1.0, 1.5] and store.manifest["max_per_image"] == 300
    total = 0
    for image_id in store.image_ids:
        boxes, emb = store.get(image_id)
        np.testing.assert_array_equal(boxes, expected_gt_boxes(data, image_id))
        assert (
            boxes.dtype == np.float32 and emb.dtype == np.float16 and emb.shape == (len(boxes), 8)
        )
        image = load_image(image_dir / f"{image_id:06d}.png")
        for box, row in zip(boxes, emb):
            np.testing.assert_allclose(
                row.astype(np.float32), ColourTeacher.embed_one(image, box).numpy(), atol=1e-3
            )
        total += len(boxes)
    assert store.num_regions == total == 6 * 3 + 1  # image 2: 3 + 1 clipped, image 3: none
    np.testing.assert_array_equal(store.get(2)[0][3], [35.0, 25.0, 40.0, 30.0])


def test_image_without_boxes_has_k0(dataset, tmp_path):
    store = EmbeddingStore.open(run(ColourTeacher(), dataset, tmp_path / "store"))
    boxes, emb = store.get(3)
    assert boxes.shape == (0, 4) and emb.shape == (0, 8)
    assert 3 in store and "3" in store and 99 not in store


def test_degenerate_boxes_counted(dataset, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="distill.cache.precompute"):
        out = run(ColourTeacher(), dataset, tmp_path / "store")
    assert (
        "7 images, 19 regions" in caplog.text
        and "1 images without boxes, 2 degenerate boxes dropped" in caplog.text
    )
    stats = [json.loads(p.read_text())["stats"] for p in sorted(out.glob("*.index.json"))]
    assert sum(s["degenerate_dropped"] for s in stats) == 2
    assert sum(s["empty_images"] for s in stats) == 1 and sum(s["images"] for s in stats) == 7


def test_get_reads_only_its_shard(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    store = EmbeddingStore.open(out)
    expected = store.get(5)
    fresh = EmbeddingStore.open(out)
    for path in out.glob("shard-*.npy"):  # image 5 lives in shard 2 (images 5, 6)
        if not path.name.startswith("shard-00002"):
            path.unlink()
    boxes, emb = fresh.get(5)  # lazy maps: the deleted shards are never touched
    np.testing.assert_array_equal(boxes, expected[0])
    np.testing.assert_array_equal(emb, expected[1])
    with pytest.raises(ValueError, match="shard-00000.boxes.npy"):
        fresh.get(1)


def test_expect_mismatch_names_field(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    EmbeddingStore.open(
        out, expect={"teacher_fingerprint": "colour-v1", "embed_dim": 8, "scales": (1.0, 1.5)}
    )
    with pytest.raises(
        ValueError, match=r"'teacher_fingerprint' is 'colour-v1', expected 'other'"
    ) as err:
        EmbeddingStore.open(out, expect={"teacher_fingerprint": "other"})
    assert str(out) in str(err.value)
    with pytest.raises(ValueError, match="'embed_dim' is 8, expected 512"):
        EmbeddingStore.open(out, expect={"embed_dim": 512})


def test_rerun_with_other_teacher_refused(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    before = tree_bytes(out)
    with pytest.raises(ValueError, match="teacher_fingerprint.*colour-v1.*colour-v2"):
        run(ColourTeacher(fingerprint="colour-v2"), dataset, out)
    with pytest.raises(ValueError, match="max_per_image"):
        run(ColourTeacher(), dataset, out, max_per_image=2)
    assert tree_bytes(out) == before


def test_truncated_shard(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    path = out / "shard-00001.emb.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="shard-00001.emb.npy is truncated"):
        EmbeddingStore.open(out)


def test_sha_verify_detects_flipped_byte(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    path = out / "shard-00000.boxes.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    EmbeddingStore.open(out)  # same size: only the hash notices
    with pytest.raises(ValueError, match="shard-00000.boxes.npy is corrupted: sha256"):
        EmbeddingStore.open(out, verify=True)


def test_unreadable_npy_header(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    path = out / "shard-00001.emb.npy"
    raw = bytearray(path.read_bytes())
    raw[:6] = b"NOTNPY"
    path.write_bytes(bytes(raw))
    store = EmbeddingStore.open(out)
    with pytest.raises(
        ValueError, match="cannot read embedding store shard file .*shard-00001.emb.npy"
    ):
        store.get(3)


def test_incomplete_store_refused(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    (out / "shard-00003.index.json").unlink()
    with pytest.raises(
        ValueError, match="incomplete: 1 of 4 shards missing .*shard-00003.index.json"
    ):
        EmbeddingStore.open(out)


def test_missing_image_id(dataset, tmp_path):
    out = run(ColourTeacher(), dataset, tmp_path / "store")
    store = EmbeddingStore.open(out)
    with pytest.raises(KeyError, match=f"image id 42 not in embedding store {out}"):
        store.get(42)
    assert store.missing([1, 42, 7, 8]) == [42, 8]


def test_missing_image_file(dataset, tmp_path):
    _, image_dir, _ = dataset
    (image_dir / "000004.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000004.png of image id 4 "):
        run(ColourTeacher(), dataset, tmp_path / "store")


def test_image_size_mismatch(dataset, tmp_path):
    _, image_dir, _ = dataset
    Image.new("RGB", (W + 1, H)).save(image_dir / "000005.png")
    with pytest.raises(ValueError, match="image id 5 .*41x30, dataset json says 40x30"):
        run(ColourTeacher(), dataset, tmp_path / "store")


def test_resume_is_byte_identical(dataset, tmp_path):
    clean = run(ColourTeacher(), dataset, tmp_path / "clean")
    crashing = ColourTeacher(
        fail_after=2
    )  # one image per call, image 3 has no box: dies on image 4 (shard 1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(crashing, dataset, tmp_path / "resumed")
    partial = tmp_path / "resumed"
    assert sorted(p.name for p in partial.glob("*.index.json")) == ["shard-00000.index.json"]
    with pytest.raises(ValueError, match="incomplete"):
        EmbeddingStore.open(partial)
    assert not list(partial.glob("*.part"))
    resuming = ColourTeacher()
    run(resuming, dataset, partial)
    assert resuming.calls == 4  # images 3..7 minus the box-less image 3; shard 0 kept
    assert tree_bytes(partial) == tree_bytes(clean)
    EmbeddingStore.open(partial, verify=True)


def test_two_ranks_merge_to_one_rank_store(dataset, tmp_path):
    single = run(ColourTeacher(), dataset, tmp_path / "single")
    split = tmp_path / "split"
    run(ColourTeacher(), dataset, split, rank=1, world_size=2)
    assert sorted(p.name for p in split.glob("*.index.json")) == [
        "shard-00001.index.json",
        "shard-00003.index.json",
    ]
    run(ColourTeacher(), dataset, split, rank=0, world_size=2)
    assert tree_bytes(split) == tree_bytes(single)
    a, b = EmbeddingStore.open(single), EmbeddingStore.open(split)
    assert a.image_ids == b.image_ids
    for image_id in a.image_ids:
        np.testing.assert_array_equal(a.get(image_id)[1], b.get(image_id)[1])


def write_proposals(path: Path, entries: dict[int, tuple[list, list]]) -> Path:
    ids = list(entries)
    data = {
        "ids": ids,
        "boxes": [np.asarray(entries[i][0], np.float32) for i in ids],
        "objectness_logits": [np.asarray(entries[i][1], np.float32) for i in ids],
    }
    path.write_bytes(pickle.dumps(data))
    return path


def test_proposals_top_m_by_objectness(dataset, tmp_path):
    boxes = [
        [0, 0, 10, 10],
        [5, 5, 5, 20],
        [2, 2, 30, 20],
        [-5, -5, 50, 50],
        [45, 0, 60, 10],
        [1, 1, 3, 3],
        [8, 8, 12, 14],
        [3, 3, 9, 9],
    ]
    scores = [0.1, 9.0, 2.0, 0.5, 8.0, 3.0, -1.0, 2.0]
    entries = {i: ([], []) for i in range(1, 8)}
    entries[4] = (boxes, scores)
    proposals = write_proposals(tmp_path / "props.pkl", entries)
    out = run(ColourTeacher(), dataset, tmp_path / "store", proposals=proposals, max_per_image=4)
    store = EmbeddingStore.open(out, expect={"source": "proposals", "proposals": "props.pkl"})
    got, emb = store.get(4)
    # drop [5,5,5,20] (zero width) and [45,0,60,10] (outside after clipping); then by objectness,
    # ties in file order: 3.0, 2.0, 2.0, 0.5
    np.testing.assert_array_equal(got, [[1, 1, 3, 3], [2, 2, 30, 20], [3, 3, 9, 9], [0, 0, 40, 30]])
    assert emb.shape == (4, 8)
    assert store.get(1)[0].shape == (0, 4)  # an empty proposal list -> K = 0
    stats = [json.loads(p.read_text())["stats"] for p in sorted(out.glob("*.index.json"))]
    assert sum(s["degenerate_dropped"] for s in stats) == 2


def test_proposals_missing_image(dataset, tmp_path):
    proposals = write_proposals(tmp_path / "props.pkl", {i: ([], []) for i in range(1, 7)})
    with pytest.raises(ValueError, match="props.pkl has no entry for image id 7"):
        run(ColourTeacher(), dataset, tmp_path / "store", proposals=proposals)


def test_empty_dataset(tmp_path):
    json_path = tmp_path / "empty.json"
    json_path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    out = precompute_region_embeddings(
        ColourTeacher(), json_path, tmp_path, tmp_path / "store", progress=False
    )
    store = EmbeddingStore.open(out)
    assert len(store) == 0 and store.num_regions == 0 and store.manifest["num_shards"] == 1


def test_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match="source='proposals'"):
        run(ColourTeacher(), dataset, tmp_path / "a", source="proposals")
    with pytest.raises(ValueError, match="invalid rank 2"):
        run(ColourTeacher(), dataset, tmp_path / "b", rank=2, world_size=2)


def test_writer_rejects_mismatched_manifest(tmp_path):
    base = {
        "teacher": "T",
        "teacher_fingerprint": "a",
        "embed_dim": 4,
        "num_shards": 1,
        "num_images": 1,
    }
    writer = EmbeddingStoreWriter(tmp_path, base)
    writer.write_shard(0, [(10, np.ones((2, 4)), np.full((2, 4), 0.5))])
    assert writer.is_complete(0)
    with pytest.raises(ValueError, match="'teacher_fingerprint' is 'a', expected 'b'"):
        EmbeddingStoreWriter(tmp_path, {**base, "teacher_fingerprint": "b"})
    boxes, emb = EmbeddingStore.open(tmp_path).get(10)
    np.testing.assert_array_equal(emb, np.full((2, 4), 0.5, np.float16))


def test_store_pickles_without_maps(dataset, tmp_path):
    store = EmbeddingStore.open(run(ColourTeacher(), dataset, tmp_path / "store"))
    expected = store.get(6)
    clone = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 4096  # no array data travels with it
    np.testing.assert_array_equal(clone.get(6)[1], expected[1])


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture()
def tiny_clip_config(tmp_path: Path) -> Path:
    pytest.importorskip("open_clip")
    teachers = pytest.importorskip("distill.teachers")
    if not hasattr(teachers, "ClipTeacher"):
        pytest.skip("distill.teachers.ClipTeacher not available yet")
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


def test_clip_teacher_round_trip(dataset, tmp_path, tiny_clip_config):
    from distill.teachers import ClipTeacher

    torch.manual_seed(0)
    teacher = ClipTeacher("tiny-cache-clip", model_config=tiny_clip_config, allow_random_init=True)
    json_path, image_dir, data = dataset
    out = run(teacher, dataset, tmp_path / "store", batch_images=4, scales=(1.0, 1.5))
    store = EmbeddingStore.open(
        out, expect={"teacher_fingerprint": teacher.fingerprint, "embed_dim": 16}, verify=True
    )
    boxes, emb = store.get(2)
    np.testing.assert_array_equal(boxes, expected_gt_boxes(data, 2))
    direct = teacher.region_embeddings(
        [load_image(image_dir / "000002.png")],
        [torch.from_numpy(boxes)],
        mode="crop",
        scales=(1.0, 1.5),
    )[0]
    np.testing.assert_allclose(emb.astype(np.float32), direct.numpy(), atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_cli_with_tiny_clip(dataset, tmp_path, tiny_clip_config):
    # by path: another installed distribution ships a top-level ``tools`` package that shadows ours
    main = runpy.run_path(
        str(Path(__file__).resolve().parents[1] / "tools" / "precompute_teacher.py")
    )["main"]
    json_path, image_dir, _ = dataset
    out = tmp_path / "cli-store"
    assert (
        main(
            [
                "--dataset-json",
                str(json_path),
                "--image-root",
                str(image_dir),
                "--out",
                str(out),
                "--model-name",
                "tiny-cache-clip",
                "--model-config",
                str(tiny_clip_config),
                "--random-init",
                "--device",
                "cpu",
                "--max-per-image",
                "2",
                "--images-per-shard",
                "3",
                "--verify",
                "--no-progress",
            ]
        )
        == 0
    )
    store = EmbeddingStore.open(
        out, expect={"embed_dim": 16, "max_per_image": 2, "source": "gt", "num_shards": 3}
    )
    assert store.image_ids == list(range(1, 8)) and store.num_regions == 6 * 2


def _distributed_worker(
    rank: int, rendezvous: str, json_path: str, image_dir: str, out: str
) -> None:
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    try:
        precompute_region_embeddings(
            ColourTeacher(),
            json_path,
            image_dir,
            out,
            images_per_shard=2,
            batch_images=1,
            progress=False,
        )  # rank/world_size from the group
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_torch_distributed_split_matches_single_process(dataset, tmp_path):
    json_path, image_dir, _ = dataset
    single = run(ColourTeacher(), dataset, tmp_path / "single")
    out = tmp_path / "dist"
    torch.multiprocessing.spawn(
        _distributed_worker,
        nprocs=2,
        args=(f"file://{tmp_path / 'rendezvous'}", str(json_path), str(image_dir), str(out)),
    )
    assert tree_bytes(out) == tree_bytes(single)
