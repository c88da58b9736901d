"""Loading a trained detector's Detectron2 checkpoint, refusing parameters of another shape."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["load_checkpoint"]


def load_checkpoint(
    model: torch.nn.Module, weights: str | os.PathLike, *, text_embeddings: str = ""
) -> None:
    """Load a Detectron2 checkpoint into ``model``, refusing (``ValueError`` naming the files) parameters whose
    shapes differ, which Detectron2's checkpointer would skip with a warning. The usual cause is a training
    classifier (``text_embeddings``) of another teacher, whose embedding size differs from the model's."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights {weights} do not exist")
    state = torch.load(weights, map_location="cpu", weights_only=False)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(
            f"{weights}: not a Detectron2 checkpoint (expected a state dict under 'model')"
        )
    expected = model.state_dict()
    wrong = {
        k: (list(v.shape), list(expected[k].shape))
        for k, v in state.items()
        if k in expected and hasattr(v, "shape") and tuple(v.shape) != tuple(expected[k].shape)
    }
    if wrong:
        hint = (
            (
                f"; the model's text embedding size comes from MODEL.VILD.TEXT_EMBEDDINGS {text_embeddings}: use the "
                f"classifier file of the teacher the model was trained with"
            )
            if text_embeddings
            else ""
        )
        listing = ", ".join(f"{k} {a} vs model {b}" for k, (a, b) in list(wrong.items())[:4])
        raise ValueError(
            f"{weights}: {len(wrong)} parameters do not match the configured model ({listing}){hint}"
        )
    DetectionCheckpointer(model).load(str(weights))
