"""Offline teacher region embeddings for ViLD-style distillation (the step ViLD never released).

For every image of a COCO/LVIS-format dataset (in increasing image-id order): take ground-truth boxes
or the top-M proposals by objectness, clip them to the image, drop degenerate ones, embed them with
the teacher and store boxes + float16 embeddings in an :class:`~distill.cache.store.EmbeddingStore`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from distill.cache.regions import Proposals, image_regions, load_proposals
from distill.cache.store import EmbeddingStoreWriter
from distill.data import ImageRecord, decode_image, read_image_records
from distill.utils import sha256_file

__all__ = ["precompute_region_embeddings", "teacher_name"]

logger = logging.getLogger(__name__)

_STAT_KEYS = ("images", "regions", "empty_images", "degenerate_dropped")


@dataclass
class _Loaded:
    record: ImageRecord
    image: torch.Tensor | None  # [3, H, W] uint8, None when the image has no box
    boxes: np.ndarray  # [K, 4] float32 xyxy
    degenerate: int


def teacher_name(teacher: Any) -> str:
    """``teacher.name`` if set, else the class name."""
    return str(getattr(teacher, "name", None) or type(teacher).__name__)


def _decode(record: ImageRecord) -> torch.Tensor:
    """RGB uint8 ``[3, H, W]`` with EXIF orientation applied; checks the json's width/height."""
    array = decode_image(record.file, image_id=record.image_id)
    height, width = array.shape[:2]
    if (record.width, record.height) != (None, None) and (record.width, record.height) != (
        width,
        height,
    ):
        raise ValueError(
            f"image id {record.image_id!r} ({record.file}): file is {width}x{height}, "
            f"dataset json says {record.width}x{record.height}"
        )
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _load(record: ImageRecord, *, proposals: Proposals | None, max_per_image: int) -> _Loaded:
    """Decode one image (only if it has boxes or the json lacks its size) and select its regions."""
    if proposals is not None:
        has_any = len(proposals.get(record.image_id)[0]) > 0
    else:
        has_any = any(not ann.get("iscrowd", 0) for ann in record.annotations)
    image = _decode(record) if has_any or record.width is None or record.height is None else None
    width, height = record.width, record.height
    if image is not None:
        width, height = int(image.shape[2]), int(image.shape[1])
    boxes, degenerate = image_regions(
        record, proposals=proposals, max_per_image=max_per_image, width=width, height=height
    )
    return _Loaded(record, image if len(boxes) else None, boxes, degenerate)


def _prefetch(items: Iterable, fn, *, depth: int = 2) -> Iterator:
    """``map(fn, items)`` computed ``depth`` items ahead in a background thread (overlaps decoding and teacher)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _embed_batch(
    teacher: Any, batch: list[_Loaded], *, mode: str, scales: Sequence[float]
) -> list[np.ndarray]:
    """Teacher embeddings ``[K_i, D]`` float16 for each loaded image (empty arrays for K_i = 0)."""
    dim = int(teacher.embed_dim)
    out = [np.zeros((0, dim), np.float16) for _ in batch]
    todo = [i for i, item in enumerate(batch) if len(item.boxes)]
    if not todo:
        return out
    with torch.inference_mode():
        embeddings = teacher.region_embeddings(
            [batch[i].image for i in todo],
            [torch.from_numpy(batch[i].boxes) for i in todo],
            mode=mode,
            scales=tuple(scales),
        )
    if len(embeddings) != len(todo):
        raise ValueError(
            f"teacher {teacher_name(teacher)} returned {len(embeddings)} embedding sets "
            f"for {len(todo)} images"
        )
    for i, emb in zip(todo, embeddings):
        emb = emb.detach().float().cpu()
        item = batch[i]
        if tuple(emb.shape) != (len(item.boxes), dim):
            raise ValueError(
                f"teacher {teacher_name(teacher)} returned shape {list(emb.shape)} for image id "
                f"{item.record.image_id!r}, expected [{len(item.boxes)}, {dim}]"
            )
        if not torch.isfinite(emb).all():
            raise ValueError(
                f"teacher {teacher_name(teacher)} returned non-finite embeddings for image id "
                f"{item.record.image_id!r} ({item.record.file})"
            )
        out[i] = emb.numpy().astype(np.float16)
    return out


def _run_shards(
    teacher: Any,
    writer: EmbeddingStoreWriter,
    slices: Mapping[int, list[ImageRecord]],
    *,
    proposals: Proposals | None,
    max_per_image: int,
    mode: str,
    scales: Sequence[float],
    batch_images: int,
    bar: tqdm,
) -> dict[str, int]:
    """Compute and write the shards ``slices`` (shard -> its image records); returns summed shard stats."""
    batches = [
        (k, recs[i : i + batch_images])
        for k, recs in slices.items()
        for i in range(0, len(recs), batch_images)
    ]

    def load_batch(item: tuple[int, list[ImageRecord]]) -> list[_Loaded]:
        return [_load(r, proposals=proposals, max_per_image=max_per_image) for r in item[1]]

    totals = dict.fromkeys(_STAT_KEYS, 0)
    entries: dict[int, list] = {k: [] for k in slices}
    stats = {k: dict.fromkeys(_STAT_KEYS, 0) for k in slices}
    remaining = {k: len(recs) for k, recs in slices.items()}
    start = time.perf_counter()
    for k in [k for k, n in remaining.items() if n == 0]:  # only for a dataset without images
        writer.write_shard(k, [], stats=stats[k])
    for (k, _), batch in zip(batches, _prefetch(batches, load_batch)):
        for item, emb in zip(batch, _embed_batch(teacher, batch, mode=mode, scales=scales)):
            entries[k].append((item.record.image_id, item.boxes, emb))
            for key, value in (
                ("images", 1),
                ("regions", len(item.boxes)),
                ("empty_images", int(len(item.boxes) == 0)),
                ("degenerate_dropped", item.degenerate),
            ):
                stats[k][key] += value
                totals[key] += value
        bar.update(len(batch))
        bar.set_postfix(
            regions_per_s=f"{totals['regions'] / max(time.perf_counter() - start, 1e-9):.1f}",
            refresh=False,
        )
        remaining[k] -= len(batch)
        if remaining[k] == 0:
            writer.write_shard(k, entries.pop(k), stats=stats[k])
    return totals


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """(rank, world_size, distributed) from the arguments or an initialized process group."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if rank is None:
        rank = torch.distributed.get_rank() if distributed else 0
    if world_size is None:
        world_size = torch.distributed.get_world_size() if distributed else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world_size {world_size}")
    return rank, world_size, distributed


def precompute_region_embeddings(
    teacher: Any,
    dataset_json: str | os.PathLike,
    image_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    proposals: str | os.PathLike | None = None,
    source: str | None = None,
    max_per_image: int = 300,
    mode: str = "crop",
    scales: Sequence[float] = (1.0, 1.5),
    images_per_shard: int = 256,
    batch_images: int = 8,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Embed up to ``max_per_image`` regions of every image with ``teacher`` into a store at ``out_dir``.

    Args:
        teacher: has ``region_embeddings(images: list[uint8 [3,H,W]], boxes: list[[K,4]], mode=, scales=)
            -> list[[K, D]]``, ``fingerprint`` and ``embed_dim`` (e.g. ``distill.teachers.ClipTeacher``).
        dataset_json: COCO/LVIS-format json; every image gets an entry (K = 0 if it has no box).
        image_root: directory of the image files (``distill.data.image_path``: ``file_name``, or
            LVIS ``coco_url`` as ``<split>/<name>`` or ``<name>``).
        proposals: Detectron2-format proposal file; regions are its top-M boxes by objectness.
        source: ``"gt"`` or ``"proposals"``; inferred from ``proposals`` when None.
        images_per_shard: shard ``k`` holds images ``[k * n, (k + 1) * n)`` of the id-sorted list.
        batch_images: images per teacher call (all their boxes go in one call).
        rank, world_size: this process handles shards with ``k % world_size == rank``; default from
            ``torch.distributed`` when initialized, else the whole dataset. Rank 0 writes the manifest.

    Completed shards of an earlier (interrupted) run with the same manifest are kept, so rerunning
    resumes; the result is byte-identical to an uninterrupted run. Returns ``Path(out_dir)``.

    Raises:
        FileNotFoundError: an image file is missing (names file and image id).
        ValueError: bad arguments, an existing store made with different settings/teacher, proposals
            lacking an image, a file whose size differs from the json.
    """
    rank, world_size, distributed = _dist_info(rank, world_size)
    if source is None:
        source = "proposals" if proposals is not None else "gt"
    if source not in ("gt", "proposals") or (source == "proposals") != (proposals is not None):
        raise ValueError(
            f"source={source!r} with proposals={proposals!r}: use source='gt' without a proposal "
            f"file or source='proposals' with one"
        )
    if max_per_image < 1 or images_per_shard < 1 or batch_images < 1:
        raise ValueError(
            f"max_per_image ({max_per_image}), images_per_shard ({images_per_shard}) and "
            f"batch_images ({batch_images}) must be >= 1"
        )
    dataset_json, image_root, out_dir = Path(dataset_json), Path(image_root), Path(out_dir)
    records = read_image_records(dataset_json, image_root)
    num_shards = max(1, -(-len(records) // images_per_shard))
    manifest = {
        "teacher": teacher_name(teacher),
        "teacher_fingerprint": str(teacher.fingerprint),
        "mode": mode,
        "scales": [float(s) for s in scales],
        "max_per_image": int(max_per_image),
        "embed_dim": int(teacher.embed_dim),
        "dataset": dataset_json.name,
        "dataset_sha256": sha256_file(dataset_json),
        "source": source,
        "proposals": None if proposals is None else Path(proposals).name,
        "proposals_sha256": None if proposals is None else sha256_file(proposals),
        "images_per_shard": int(images_per_shard),
        "num_images": len(records),
        "num_shards": num_shards,
        "boxes": "float32 xyxy absolute",
        "embeddings": "float16 L2-normalized",
    }
    writer = EmbeddingStoreWriter(out_dir, manifest, write_manifest=rank == 0)
    if distributed:
        torch.distributed.barrier()
    shards = [k for k in range(num_shards) if k % world_size == rank]
    incomplete = [k for k in range(num_shards) if not writer.is_complete(k)]
    for (
        k
    ) in incomplete:  # every rank checks every incomplete shard, so all ranks fail alike and early
        for record in records[k * images_per_shard : (k + 1) * images_per_shard]:
            if not record.file.is_file():
                raise FileNotFoundError(
                    f"image file {record.file} of image id {record.image_id!r} "
                    f"(dataset {dataset_json}) does not exist"
                )
    pending = [k for k in incomplete if k % world_size == rank]
    slices = {k: records[k * images_per_shard : (k + 1) * images_per_shard] for k in pending}
    props = load_proposals(proposals) if proposals is not None else None
    bar = tqdm(
        total=sum(len(s) for s in slices.values()),
        unit="img",
        disable=not progress,
        desc=f"teacher regions [{rank}/{world_size}]" if world_size > 1 else "teacher regions",
    )
    start = time.perf_counter()
    try:
        totals = _run_shards(
            teacher,
            writer,
            slices,
            proposals=props,
            max_per_image=max_per_image,
            mode=mode,
            scales=scales,
            batch_images=batch_images,
            bar=bar,
        )
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    logger.info(
        "teacher regions rank %d/%d: %d shards computed, %d already complete; %d images, %d regions "
        "(%.1f regions/s), %d images without boxes, %d degenerate boxes dropped -> %s",
        rank,
        world_size,
        len(pending),
        len(shards) - len(pending),
        totals["images"],
        totals["regions"],
        totals["regions"] / max(elapsed, 1e-9),
        totals["empty_images"],
        totals["degenerate_dropped"],
        out_dir,
    )
    if distributed:
        torch.distributed.barrier()
    return out_dir
