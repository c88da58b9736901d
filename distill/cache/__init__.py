"""Teacher-embedding cache: a sharded, memory-mappable store of region boxes + embeddings, and its precompute."""

from distill.cache.precompute import precompute_region_embeddings, teacher_name
from distill.cache.regions import Proposals, load_proposals, select_proposals
from distill.cache.store import EmbeddingStore, EmbeddingStoreWriter

__all__ = [
    "EmbeddingStore",
    "EmbeddingStoreWriter",
    "precompute_region_embeddings",
    "teacher_name",
    "Proposals",
    "load_proposals",
    "select_proposals",
]
