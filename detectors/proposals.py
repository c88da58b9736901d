"""The proposals of ViLD's region cache: training the proposal network of
``MODEL.VILD.DISTILL.PROPOSAL_CONFIG`` (:func:`proposal_file`) and dumping its proposals in
Detectron2's proposal-file format (:func:`dump_proposals`, read by the precompute)."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils import comm
from tqdm.auto import tqdm

from distill.utils import atomic_path, cache_dir, file_key, sha256_json

from .config import load_config
from .data import OVDatasetMapper, build_batched_test_loader, get_ov_metadata
from .engine import OVTrainer, seed_everything

__all__ = ["proposal_file", "dump_proposals"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def dump_proposals(
    model: torch.nn.Module,
    data_loader: Iterable[list[dict]],
    out_path: str | os.PathLike,
    *,
    topk: int | None = None,
    progress: bool = True,
) -> Path:
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
                    raise ValueError(
                        f"model output for image id {inp.get('image_id')!r} has no 'proposals' "
                        f"(use a proposal network, MODEL.META_ARCHITECTURE ProposalNetwork)"
                    )
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
        pickle.dump(
            {"ids": ids, "boxes": boxes, "objectness_logits": logits, "bbox_mode": 0}, handle
        )
    logger.info(
        "wrote %d images' proposals (%.1f per image) to %s",
        len(ids),
        float(np.mean([len(b) for b in boxes])) if boxes else 0.0,
        out_path,
    )
    return out_path


def proposal_file(cfg: CfgNode) -> str:
    """The proposal file of the region cache: ``MODEL.VILD.DISTILL.PROPOSALS``, or the proposals
    of ``DATASETS.TRAIN[0]`` dumped by the RPN of ``PROPOSAL_CONFIG`` trained on ``DATASETS.TRAIN``
    with this config's ``DATASETS`` / ``SEED`` / ``INPUT`` / ``MODEL.DEVICE`` and
    ``PROPOSAL_OPTS`` (cached by what changes the weights; an interrupted training resumes)."""
    distill = cfg.MODEL.VILD.DISTILL
    if distill.PROPOSALS:
        if not Path(distill.PROPOSALS).is_file():
            raise FileNotFoundError(
                f"MODEL.VILD.DISTILL.PROPOSALS file {distill.PROPOSALS} does not exist"
            )
        return distill.PROPOSALS
    if not distill.PROPOSAL_CONFIG:
        raise ValueError(
            "MODEL.VILD.DISTILL.SOURCE is 'proposals' but neither PROPOSALS (a "
            "proposal file) nor PROPOSAL_CONFIG (an RPN config to train) is set; or "
            "use SOURCE gt"
        )
    rpn_cfg = load_config(distill.PROPOSAL_CONFIG)
    for key in ("DATASETS", "SEED", "INPUT"):
        rpn_cfg[key] = cfg[key].clone() if isinstance(cfg[key], CfgNode) else cfg[key]
    rpn_cfg.DATASETS.TEST = ()
    rpn_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    rpn_cfg.merge_from_list(list(distill.PROPOSAL_OPTS))
    train_name = cfg.DATASETS.TRAIN[0]
    trained = rpn_cfg.clone()  # the cache key covers what changes the weights, not inference
    trained.TEST, trained.OUTPUT_DIR = CfgNode(), ""
    key = sha256_json([trained.dump(), file_key(get_ov_metadata(train_name).json_file)])[:16]
    rpn_cfg.OUTPUT_DIR = str(cache_dir("vild", "rpn", f"{train_name}-{key}"))
    out = Path(rpn_cfg.OUTPUT_DIR) / f"proposals_{train_name}.pkl"
    if out.is_file():
        return str(out)
    if comm.get_world_size() > 1:
        raise ValueError(
            "training the proposal network inside a multi-process run is not "
            "supported: run once with --num-gpus 1 (it is cached), or set "
            "MODEL.VILD.DISTILL.PROPOSALS"
        )
    final = Path(rpn_cfg.OUTPUT_DIR) / "model_final.pth"
    if not final.is_file():
        logger.info(
            "training the proposal network %s on %s -> %s",
            distill.PROPOSAL_CONFIG,
            train_name,
            rpn_cfg.OUTPUT_DIR,
        )
        Path(rpn_cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        seed_everything(max(rpn_cfg.SEED, 0))
        trainer = OVTrainer(rpn_cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()
    model = build_model(rpn_cfg)
    DetectionCheckpointer(model).load(str(final))
    loader = build_batched_test_loader(
        DatasetCatalog.get(train_name),
        mapper=OVDatasetMapper(rpn_cfg, False),
        batch_size=rpn_cfg.TEST.IMS_PER_BATCH,
    )
    return str(dump_proposals(model, loader, out))
