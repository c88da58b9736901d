"""``OVTrainer``: Detectron2's ``DefaultTrainer`` with open-vocabulary data, evaluation and exact resume."""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from distill.targets import RegionTargetProvider

from .data import (
    OVDatasetMapper,
    ResumableTrainLoader,
    build_batched_test_loader,
    cached_region_targets,
    check_image_files,
    dataset_vocabulary,
    online_region_targets,
    read_classifier,
    resumable_repeats,
)
from .evaluation import METRICS_FILE, OVDetectionEvaluator
from .host import inner_trainer, last_eval_results
from .teacher import online_teacher_handle

__all__ = [
    "OVTrainer",
    "StepSeedHook",
    "seed_everything",
    "build_region_targets",
    "unwrap_model",
    "maybe_add_full_model_gradient_clipping",
]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a (Distributed)DataParallel wrapper."""
    return (
        model.module
        if isinstance(model, (DistributedDataParallel, torch.nn.DataParallel))
        else model
    )


class StepSeedHook(hooks.HookBase):
    """Reseeds every RNG with ``base + 1000003 * rank + iteration`` before each step.

    Together with :class:`~detectors.data.ResumableTrainLoader` (``num_workers=0``), iteration ``i``
    sees the same data, augmentation and RoI sampling whether or not training was interrupted and
    resumed. The base seed is part of the checkpoint (hook state).
    """

    def __init__(self, base: int) -> None:
        self.base = int(base)

    def before_step(self) -> None:
        seed_everything(self.base + 1000003 * comm.get_rank() + self.trainer.iter)

    def state_dict(self) -> dict:
        return {"base": self.base}

    def load_state_dict(self, state: dict) -> None:
        self.base = int(state["base"])


def build_region_targets(cfg, dataset_dicts: list[dict]) -> RegionTargetProvider | None:
    """The distillation-target provider of the training set (None when distillation is off).

    Cached (default): ``detectors.data.cached_region_targets``, checked against the text
    classifier's teacher fingerprint and embedding size, and for coverage of every training image
    (``MODEL.VILD.DISTILL.ON_MISSING``). Online: ``detectors.data.online_region_targets`` with the
    configured teacher (checked against the text classifier).
    """
    vild = cfg.MODEL.VILD
    if not vild.DISTILL.ENABLED or cfg.MODEL.META_ARCHITECTURE != "ViLDRCNN":
        return None
    if len(cfg.DATASETS.TRAIN) != 1:
        raise ValueError(
            f"ViLD distillation reads one region cache per training set; got DATASETS.TRAIN "
            f"{tuple(cfg.DATASETS.TRAIN)} (merge them into one dataset)"
        )
    classifier = read_classifier(vild.TEXT_EMBEDDINGS)
    if vild.DISTILL.ONLINE:
        handle = online_teacher_handle(cfg, expect_fingerprint=classifier.teacher_fingerprint)
        return online_region_targets(cfg, handle.get())
    return cached_region_targets(cfg, dataset_dicts, classifier=classifier)


def maybe_add_full_model_gradient_clipping(
    cfg, optimizer_type: type[torch.optim.Optimizer]
) -> type[torch.optim.Optimizer]:
    """``optimizer_type``, or with ``SOLVER.CLIP_GRADIENTS.ENABLED`` and ``CLIP_TYPE
    "full_model"`` a subclass whose ``step`` first clips the ``NORM_TYPE`` norm of ALL gradients
    together to ``CLIP_VALUE`` (``torch.nn.utils.clip_grad_norm_`` over every parameter group).

    That is mmengine's ``clip_grad=dict(max_norm=..., norm_type=...)`` (wusize/ovdet@d74a20c OV-LVIS
    configs) and Detic's / ViTDet's "full_model" clip type; Detectron2 0.6 knows only "value" and
    "norm", which clip each parameter tensor separately. Under AMP, ``GradScaler.step`` unscales
    the gradients before calling ``step``, so the clip sees true gradients (as mmengine's
    AmpOptimWrapper).
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == "full_model"):
        return optimizer_type
    max_norm, norm_type = float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    if max_norm <= 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {max_norm}")

    class FullModelGradientClipping(optimizer_type):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
            return super().step(closure)

    FullModelGradientClipping.__name__ = f"{optimizer_type.__name__}WithFullModelGradientClip"
    return FullModelGradientClipping


class OVTrainer(DefaultTrainer):
    """DefaultTrainer for ovdistill's detectors.

    * training data: :class:`OVDatasetMapper` with the region targets of :func:`build_region_targets`;
      with ``SOLVER.DETERMINISTIC_STEPS`` a :class:`ResumableTrainLoader` and a :class:`StepSeedHook`
      make ``--resume`` reproduce an uninterrupted run (use ``DATALOADER.NUM_WORKERS 0``); there,
      ``DATALOADER.SAMPLER_TRAIN`` ``RepeatFactorTrainingSampler`` repeats each image ``ceil(r)``
      times per epoch (mmdet's ClassBalancedDataset; ``detectors.data.resumable_repeats``);
    * evaluation: :class:`OVDetectionEvaluator`, after switching the model's vocabulary to each test
      dataset's classes plus ``MODEL.VILD.CLASSES.TEST_EXTRA_NAMES`` (restored afterwards; the
      evaluator drops the extra classes' detections);
    * checkpoints include the optimizer state;
    * no PreciseBN hook;
    * RoI heads with ``set_teacher`` (BARON) get a lazy handle of ``MODEL.VILD.TEACHER``'s teacher,
      built and checked against the text classifier's fingerprint here, before training starts.
    """

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        heads = getattr(unwrap_model(self.model), "roi_heads", None)
        if hasattr(heads, "set_teacher"):
            expected = heads.teacher_fingerprint
            heads.set_teacher(online_teacher_handle(cfg, expect_fingerprint=expected))
            heads.get_teacher()  # built now: a teacher that did not make the classifier fails early

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
        if cfg.DATALOADER.CHECK_IMAGES:
            check_image_files(dataset, dataset=",".join(cfg.DATASETS.TRAIN))
        mapper = OVDatasetMapper(cfg, True, region_targets=build_region_targets(cfg, dataset))
        if cfg.SOLVER.DETERMINISTIC_STEPS:
            if cfg.DATALOADER.NUM_WORKERS:
                logger.warning(
                    "SOLVER.DETERMINISTIC_STEPS with DATALOADER.NUM_WORKERS=%d: augmentation runs in "
                    "worker processes, so a resumed run may differ; use 0 workers for exact resume",
                    cfg.DATALOADER.NUM_WORKERS,
                )
            return ResumableTrainLoader(
                dataset,
                mapper=mapper,
                total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                seed=max(cfg.SEED, 0),
                num_workers=cfg.DATALOADER.NUM_WORKERS,
                aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
                repeats=resumable_repeats(cfg, dataset),
            )
        return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """Inference loader of a dataset, ``TEST.IMS_PER_BATCH`` images per batch."""
        dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
        return build_batched_test_loader(
            dicts,
            mapper=OVDatasetMapper(cfg, False),
            batch_size=cfg.TEST.IMS_PER_BATCH,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def build_evaluator(
        cls, cfg, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        first = not cfg.DATASETS.TEST or dataset_name == cfg.DATASETS.TEST[0]
        return OVDetectionEvaluator(
            dataset_name,
            output_dir=output_folder or cfg.OUTPUT_DIR,
            iou_types=("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",),
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            metrics_file=METRICS_FILE if first else f"ov_metrics.{dataset_name}.json",
            extra_class_names=tuple(cfg.MODEL.VILD.CLASSES.TEST_EXTRA_NAMES),
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None) -> dict[str, Any]:
        """Evaluate on every ``DATASETS.TEST`` set with that set's vocabulary; returns metrics per set
        (or the metrics alone for a single set, as Detectron2 does)."""
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} test datasets"
            )
        heads = getattr(unwrap_model(model), "roi_heads", None)
        vocab_heads = heads if hasattr(heads, "set_vocabulary") else None
        saved = vocab_heads.get_vocabulary() if vocab_heads is not None else None
        results: OrderedDict = OrderedDict()
        try:
            for index, name in enumerate(cfg.DATASETS.TEST):
                if vocab_heads is not None:
                    vocab_heads.set_vocabulary(*dataset_vocabulary(cfg, name))
                evaluator = (
                    evaluators[index] if evaluators is not None else cls.build_evaluator(cfg, name)
                )
                results[name] = inference_on_dataset(
                    model, cls.build_test_loader(cfg, name), evaluator
                )
                if comm.is_main_process() and results[name]:
                    logger.info("Evaluation results for %s in csv format:", name)
                    print_csv_format(results[name])
        finally:
            if saved is not None:
                embeddings, names, seen = saved
                vocab_heads.set_vocabulary(embeddings, names, seen=seen)
        return next(iter(results.values())) if len(results) == 1 else results

    @classmethod
    def build_optimizer(cls, cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
        """Detectron2's optimizer (``detectron2.solver.build_optimizer``), except with
        ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE "full_model"``, which Detectron2 0.6 does not know: the
        same SGD parameter groups, clipped together (:func:`maybe_add_full_model_gradient_clipping`)."""
        clip = cfg.SOLVER.CLIP_GRADIENTS
        if not (clip.ENABLED and clip.CLIP_TYPE == "full_model"):
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_full_model_gradient_clipping(cfg, torch.optim.SGD)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )

    def build_hooks(self) -> list:
        ret = [h for h in super().build_hooks() if not isinstance(h, hooks.PreciseBN)]
        if self.cfg.SOLVER.DETERMINISTIC_STEPS:
            ret.insert(0, StepSeedHook(max(self.cfg.SEED, 0)))
        return ret

    def state_dict(self) -> dict:
        """Iteration and hook states, plus the optimizer's (momentum buffers), which Detectron2 0.6's
        DefaultTrainer leaves out of checkpoints, so that ``--resume`` continues exactly."""
        ret = super().state_dict()
        ret["_trainer"] = inner_trainer(self).state_dict()
        return ret

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            inner_trainer(self).load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "checkpoint has no optimizer state (written by another trainer): momentum restarts"
            )

    def train(self) -> dict | None:
        """Train; returns the last evaluation results (None if no evaluation ran)."""
        super().train()
        return last_eval_results(self)

    def resume_or_load(self, resume: bool = True) -> None:
        super().resume_or_load(resume=resume)
        if isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.start_iter = self.start_iter
