"""Dump a proposal network's proposals in Detectron2's proposal-file format (read by the precompute)."""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from distill.utils import atomic_path

__all__ = ["dump_proposals"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def dump_proposals(model: torch.nn.Module, data_loader: Iterable[list[dict]], out_path: str | os.PathLike, *,
                   topk: int | None = None, progress: bool = True) -> Path:
    """Run ``model`` (e.g. Detectron2's ``ProposalNetwork``) over ``data_loader`` and write its proposals.

    The file is a pickle ``{"ids", "boxes" [K_i, 4] float32 xyxy in original image coordinates,
    "objectness_logits" [K_i] float32, "bbox_mode": 0}``, images in loader order, written atomically.
    Outputs must carry ``proposals`` (Instances with ``proposal_boxes`` and ``objectness_logits``).
    """
    was_training = model.training
    model.eval()
    ids, boxes, logits = [], [], []
    try:
        for batch in tqdm(data_loader, desc="proposals", unit="batch", disable=not progress):
            for inp, out in zip(batch, model(batch)):
                if "proposals" not in out:
                    raise ValueError(f"model output for image id {inp.get('image_id')!r} has no 'proposals' "
                                     f"(use a proposal network, MODEL.META_ARCHITECTURE ProposalNetwork)")
                props = out["proposals"].to("cpu")
                order = torch.argsort(props.objectness_logits, descending=True, stable=True)
                if topk is not None:
                    order = order[:topk]
                ids.append(inp["image_id"])
                boxes.append(props.proposal_boxes.tensor[order].numpy().astype(np.float32))
                logits.append(props.objectness_logits[order].numpy().astype(np.float32))
    finally:
        model.train(was_training)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as handle:
        pickle.dump({"ids": ids, "boxes": boxes, "objectness_logits": logits, "bbox_mode": 0}, handle)
    logger.info("wrote %d images' proposals (%.1f per image) to %s", len(ids),
                float(np.mean([len(b) for b in boxes])) if boxes else 0.0, out_path)
    return out_path
