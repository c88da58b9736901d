"""Sharded, memory-mappable store of per-image region boxes and teacher embeddings.

Layout of a store directory::

    manifest.json                 teacher, teacher_fingerprint, mode, scales, max_per_image, embed_dim,
                                  dataset, dataset_sha256, source, images_per_shard, num_images, num_shards
    shard-{k:05d}.boxes.npy       [N_k, 4] float32, absolute xyxy image coordinates
    shard-{k:05d}.emb.npy         [N_k, D] float16, L2-normalized teacher embeddings
    shard-{k:05d}.index.json      {"images": [[image_id, offset, count], ...], "files": {...sizes, sha256}}

Shard ``k`` always covers the same slice of the id-sorted image list, whatever the number of ranks,
so the store's bytes do not depend on how the work was split or interrupted. The index file is
written last: a shard is complete iff its index exists and the array files have the recorded sizes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.utils import atomic_path, sha256_file, sha256_json, write_json_atomic

FORMAT = "ovdistill.embedding_store"
VERSION = 1
MANIFEST_NAME = "manifest.json"

__all__ = ["EmbeddingStore", "EmbeddingStoreWriter", "shard_file", "FORMAT", "VERSION"]


def shard_file(root: str | os.PathLike, shard: int, kind: str) -> Path:
    """Path of shard ``shard``'s ``kind`` file (``"boxes"``, ``"emb"`` or ``"index"``)."""
    suffix = {"boxes": "boxes.npy", "emb": "emb.npy", "index": "index.json"}[kind]
    return Path(root) / f"shard-{shard:05d}.{suffix}"


def _canonical(value: Any) -> Any:
    """JSON round trip, so tuples compare equal to lists and numpy scalars to Python numbers."""
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no embedding store at {root}: {path} does not exist")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupted embedding-store manifest {path}: {err}") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(
            f"{path} is not an {FORMAT} v{VERSION} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
        )
    return manifest


def _check_fields(manifest: Mapping, expect: Mapping, *, where: Path, what: str) -> None:
    """Raise ValueError naming the first field of ``expect`` whose value differs in ``manifest``."""
    for key, want in expect.items():
        if key not in manifest:
            raise ValueError(f"{what} {where}: manifest has no field {key!r} (expected {want!r})")
        if _canonical(manifest[key]) != _canonical(want):
            raise ValueError(
                f"{what} {where}: manifest field {key!r} is {manifest[key]!r}, expected {want!r}"
            )


class EmbeddingStoreWriter:
    """Writes the shards of one store; several writers (ranks) may share a directory.

    Args:
        root: store directory.
        manifest: the store's description (see module docstring); must hold ``num_shards`` and
            ``embed_dim``. If ``root`` already holds a manifest, every field must match, so a rerun
            resumes the same job and never mixes two teachers' embeddings.
        write_manifest: write the manifest (rank 0); other ranks only check an existing one.
    """

    def __init__(
        self, root: str | os.PathLike, manifest: Mapping[str, Any], *, write_manifest: bool = True
    ) -> None:
        self.root = Path(root)
        self.manifest = _canonical({"format": FORMAT, "version": VERSION, **manifest})
        for key in ("num_shards", "embed_dim"):
            if key not in self.manifest:
                raise ValueError(f"embedding-store manifest for {self.root} lacks field {key!r}")
        self.manifest_sha256 = sha256_json(self.manifest)
        if (self.root / MANIFEST_NAME).exists():
            existing = _read_manifest(self.root)
            _check_fields(
                existing,
                self.manifest,
                where=self.root,
                what="refusing to mix caches: existing embedding store",
            )
            _check_fields(
                self.manifest,
                existing,
                where=self.root,
                what="refusing to mix caches: existing embedding store",
            )
        elif write_manifest:
            write_json_atomic(self.root / MANIFEST_NAME, self.manifest, indent=1)

    def is_complete(self, shard: int) -> bool:
        """True if ``shard``'s index exists, belongs to this manifest and its array files have the recorded sizes."""
        index_path = shard_file(self.root, shard, "index")
        if not index_path.is_file():
            return False
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        if not isinstance(index, dict) or index.get("manifest_sha256") != self.manifest_sha256:
            return False
        try:
            metas = [index["files"][kind] for kind in ("boxes", "emb")]
            paths = [(self.root / meta["name"], meta["bytes"]) for meta in metas]
        except (KeyError, TypeError):
            return False
        return all(path.is_file() and path.stat().st_size == size for path, size in paths)

    def write_shard(
        self,
        shard: int,
        entries: Sequence[tuple[Hashable, np.ndarray, np.ndarray]],
        *,
        stats: Mapping[str, int] | None = None,
    ) -> Path:
        """Atomically write shard ``shard`` from ``(image_id, boxes [K,4], embeddings [K,D])`` entries.

        Array files are written first and the index last, so an interrupted write leaves the shard
        incomplete (recomputed on resume), never half-valid. Returns the index path.
        """
        if not 0 <= shard < self.manifest["num_shards"]:
            raise ValueError(
                f"shard {shard} out of range [0, {self.manifest['num_shards']}) for {self.root}"
            )
        dim = self.manifest["embed_dim"]
        images, boxes_list, emb_list, offset = [], [], [], 0
        for image_id, boxes, emb in entries:
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            emb = np.asarray(emb, dtype=np.float16).reshape(-1, dim)
            if len(boxes) != len(emb):
                raise ValueError(
                    f"image {image_id!r}: {len(boxes)} boxes but {len(emb)} embeddings"
                )
            images.append([image_id, offset, len(boxes)])
            boxes_list.append(boxes)
            emb_list.append(emb)
            offset += len(boxes)
        arrays = {
            "boxes": np.concatenate(boxes_list) if boxes_list else np.zeros((0, 4), np.float32),
            "emb": np.concatenate(emb_list) if emb_list else np.zeros((0, dim), np.float16),
        }
        files = {}
        for kind, array in arrays.items():
            path = shard_file(self.root, shard, kind)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            files[kind] = {
                "name": path.name,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        index = {
            "shard": shard,
            "manifest_sha256": self.manifest_sha256,
            "num_regions": offset,
            "files": files,
            "stats": dict(stats or {}),
            "images": images,
        }
        index_path = shard_file(self.root, shard, "index")
        write_json_atomic(index_path, index)
        return index_path


class EmbeddingStore:
    """Read-only view of a store: O(1) ``get(image_id)`` through lazily memory-mapped shard arrays.

    Use :meth:`open`. Picklable (e.g. into DataLoader workers): memory maps are reopened lazily.
    """

    def __init__(
        self,
        root: Path,
        manifest: dict,
        entries: dict[str, tuple[int, int, int]],
        image_ids: list,
        shard_meta: dict[int, dict],
    ) -> None:
        self.path = root
        self.manifest = manifest
        self.image_ids = image_ids
        self._entries = entries  # str(image_id) -> (shard, offset, count)
        self._shard_meta = shard_meta  # shard -> index["files"] | {"num_regions": N}
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        expect: Mapping[str, Any] | None = None,
        verify: bool = False,
    ) -> EmbeddingStore:
        """Open the store at ``path``.

        Args:
            expect: manifest fields that must match (e.g. ``{"teacher_fingerprint": fp, "embed_dim": 512}``);
                a mismatch raises ValueError naming the field, both values and the path.
            verify: also check every shard file's sha256 (reads everything once).

        Raises:
            FileNotFoundError: no manifest at ``path``.
            ValueError: field mismatch, missing shards (incomplete precompute), truncated or corrupted shard.
        """
        root = Path(path)
        manifest = _read_manifest(root)
        if expect:
            _check_fields(manifest, expect, where=root, what="embedding store")
        manifest_sha = sha256_json(manifest)
        entries: dict[str, tuple[int, int, int]] = {}
        image_ids: list = []
        shard_meta: dict[int, dict] = {}
        missing = [
            k for k in range(manifest["num_shards"]) if not shard_file(root, k, "index").is_file()
        ]
        if missing:
            shown = ", ".join(shard_file(root, k, "index").name for k in missing[:5])
            raise ValueError(
                f"embedding store {root} is incomplete: {len(missing)} of {manifest['num_shards']} "
                f"shards missing ({shown}{', ...' if len(missing) > 5 else ''}); "
                f"rerun the precompute to resume"
            )
        for k in range(manifest["num_shards"]):
            index_path = shard_file(root, k, "index")
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
                images, files, num_regions = index["images"], index["files"], index["num_regions"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"corrupted shard index {index_path}: {err!r}") from err
            if index.get("shard") != k or index.get("manifest_sha256") != manifest_sha:
                raise ValueError(
                    f"shard index {index_path} does not belong to {root / MANIFEST_NAME} "
                    f"(written by a different precompute run)"
                )
            for kind in ("boxes", "emb"):
                file_path = root / files[kind]["name"]
                if not file_path.is_file():
                    raise ValueError(f"embedding store shard file {file_path} is missing")
                size = file_path.stat().st_size
                if size != files[kind]["bytes"]:
                    raise ValueError(
                        f"embedding store shard file {file_path} is truncated or corrupted: "
                        f"{size} bytes, index records {files[kind]['bytes']}"
                    )
                if verify and sha256_file(file_path) != files[kind]["sha256"]:
                    raise ValueError(
                        f"embedding store shard file {file_path} is corrupted: sha256 mismatch"
                    )
            for image_id, offset, count in images:
                key = str(image_id)
                if key in entries:
                    raise ValueError(
                        f"image id {image_id!r} appears twice in {root} "
                        f"(shards {entries[key][0]} and {k})"
                    )
                entries[key] = (k, offset, count)
                image_ids.append(image_id)
            shard_meta[k] = {**files, "num_regions": num_regions}
        if len(image_ids) != manifest.get("num_images", len(image_ids)):
            raise ValueError(
                f"embedding store {root} holds {len(image_ids)} images, manifest says "
                f"{manifest['num_images']}"
            )
        return cls(root, manifest, entries, image_ids, shard_meta)

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def num_regions(self) -> int:
        """Total number of stored regions over all images."""
        return sum(meta["num_regions"] for meta in self._shard_meta.values())

    def __len__(self) -> int:
        return len(self.image_ids)

    def __contains__(self, image_id: Hashable) -> bool:
        return str(image_id) in self._entries

    def missing(self, image_ids: Iterable[Hashable]) -> list:
        """The ids among ``image_ids`` that the store does not hold (in the given order)."""
        return [i for i in image_ids if str(i) not in self._entries]

    def get(self, image_id: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``[K, 4]`` float32 (xyxy, image coordinates) and embeddings ``[K, D]`` float16 of one image.

        Both are fresh writable copies (K <= max_per_image, so this is cheap). Raises KeyError naming
        the image id and the store path if the image is not stored.
        """
        try:
            shard, offset, count = self._entries[str(image_id)]
        except KeyError:
            raise KeyError(f"image id {image_id!r} not in embedding store {self.path}") from None
        boxes, emb = self._shard_arrays(shard)
        return np.array(boxes[offset : offset + count]), np.array(emb[offset : offset + count])

    def _shard_arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._arrays.get(shard)
        if arrays is None:
            meta = self._shard_meta[shard]
            loaded = []
            for kind, dtype, width in (
                ("boxes", np.float32, 4),
                ("emb", np.float16, self.embed_dim),
            ):
                file_path = self.path / meta[kind]["name"]
                try:
                    array = np.load(file_path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError, EOFError) as err:
                    raise ValueError(
                        f"cannot read embedding store shard file {file_path}: {err}"
                    ) from err
                if array.dtype != dtype or array.shape != (meta["num_regions"], width):
                    raise ValueError(
                        f"embedding store shard file {file_path} is corrupted: "
                        f"{array.dtype}{list(array.shape)}, expected "
                        f"{np.dtype(dtype)}[{meta['num_regions']}, {width}]"
                    )
                loaded.append(array)
            arrays = self._arrays[shard] = (loaded[0], loaded[1])
        return arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"EmbeddingStore({str(self.path)!r}, images={len(self)}, teacher={self.manifest.get('teacher')!r}, "
            f"embed_dim={self.embed_dim}, source={self.manifest.get('source')!r})"
        )
