"""ovdistill core: framework-free teachers, ops, losses, cache, vocabularies and evaluators."""

__version__ = "0.1.0"
