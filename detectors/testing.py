"""Tiny real inputs for tests and benchmarks: a few-image COCO-format dataset, small ViLD / BARON configs, a
stub teacher, and helpers running toy configs end to end (resume / eval-only checks)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import HookBase
from PIL import Image, ImageDraw
from torchvision.ops import roi_align

from distill.text_encoder import PseudoTextEncoder, TextEncoderConfig, save_text_encoder
from distill.vocab import ClassifierFile

from .cli import argument_parser, build_trainer, main, setup
from .config import add_ovdistill_config
from .data import resolve_training_classes
from .evaluation import read_metrics

__all__ = [
    "TINY_CLASSES",
    "write_tiny_dataset",
    "write_random_text_embeddings",
    "tiny_vild_config",
    "write_random_text_encoder",
    "tiny_baron_config",
    "StubTeacher",
    "TINY_TOY_OPTS",
    "toy_run_args",
    "final_weights",
    "check_resume_and_eval_only",
]

TINY_CLASSES = (
    ("red box", "base", (220, 40, 40)),
    ("green box", "base", (40, 200, 40)),
    ("blue box", "novel", (40, 40, 220)),
)
"""(name, split, RGB colour) of the tiny dataset's classes."""


def write_tiny_dataset(
    root: str | os.PathLike,
    *,
    num_images: int = 4,
    size: int = 64,
    seed: int = 0,
    classes: Sequence[tuple[str, str, tuple[int, int, int]]] = TINY_CLASSES,
    base_only: bool = False,
) -> tuple[Path, Path]:
    """Images with 1-3 filled rectangles on noise, and their COCO json (categories carry ``split``).

    Returns ``(json_path, image_root)``. With ``base_only`` the novel objects are drawn but not
    annotated (a training split).
    """
    root = Path(root)
    image_root = root / "images"
    image_root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas = Image.fromarray(rng.integers(90, 160, (size, size, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            cat = int(rng.integers(0, len(classes)))
            w, h = (int(v) for v in rng.integers(size // 6, size // 2, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=tuple(classes[cat][2]))
            if base_only and classes[cat][1] != "base":
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat + 1,
                    "bbox": [x, y, w, h],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        name = f"{image_id:04d}.png"
        canvas.save(image_root / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
    categories = [
        {"id": i + 1, "name": name, "split": split} for i, (name, split, _) in enumerate(classes)
    ]
    json_path = root / "instances.json"
    json_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}),
        encoding="utf-8",
    )
    return json_path, image_root


def write_random_text_embeddings(
    path: str | os.PathLike,
    names: Sequence[str],
    *,
    dim: int = 16,
    seed: int = 0,
    fingerprint: str = "random-test-teacher",
) -> Path:
    """A classifier file with random normalized embeddings (a stand-in teacher for model tests)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(
        torch.randn(len(names), dim, generator=generator), dim=-1
    )
    table = ClassifierFile.from_embeddings(list(names), embeddings, teacher_fingerprint=fingerprint)
    return table.save(path)


def tiny_vild_config(
    *,
    train: str,
    test: str,
    text_embeddings: str | os.PathLike,
    output_dir: str | os.PathLike,
    distill: bool = False,
    ensemble: bool = False,
    box_norm: str = "BN",
) -> CfgNode:
    """A CPU ViLD config small enough for unit tests (width-8 ResNet-10-FPN, 64 px, 2 images per
    batch); ``train`` must be registered (the training vocabulary is resolved from it)."""
    cfg = get_cfg()
    add_ovdistill_config(cfg)
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.META_ARCHITECTURE",
            "ViLDRCNN",
            "MODEL.BACKBONE.NAME",
            "build_basic_resnet_fpn_backbone",
            "MODEL.BACKBONE.FREEZE_AT",
            0,
            "MODEL.BASIC_RESNET.DEPTH",
            10,
            "MODEL.BASIC_RESNET.WIDTH",
            8,
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.RESNETS.OUT_FEATURES",
            ["res2", "res3", "res4", "res5"],
            "MODEL.FPN.IN_FEATURES",
            ["res2", "res3", "res4", "res5"],
            "MODEL.FPN.OUT_CHANNELS",
            16,
            "MODEL.ANCHOR_GENERATOR.SIZES",
            [[8], [16], [32], [64], [128]],
            "MODEL.RPN.IN_FEATURES",
            ["p2", "p3", "p4", "p5", "p6"],
            "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
            200,
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            50,
            "MODEL.RPN.PRE_NMS_TOPK_TEST",
            100,
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            30,
            "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
            64,
            "MODEL.ROI_HEADS.NAME",
            "ViLDROIHeads",
            "MODEL.ROI_HEADS.IN_FEATURES",
            ["p2", "p3", "p4", "p5"],
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            32,
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            0.0,
            "MODEL.ROI_BOX_HEAD.NAME",
            "ViLDConvFCHead",
            "MODEL.ROI_BOX_HEAD.NUM_CONV",
            1,
            "MODEL.ROI_BOX_HEAD.CONV_DIM",
            16,
            "MODEL.ROI_BOX_HEAD.NUM_FC",
            1,
            "MODEL.ROI_BOX_HEAD.FC_DIM",
            32,
            "MODEL.ROI_BOX_HEAD.NORM",
            box_norm,
            "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
            True,
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
            7,
            "MODEL.VILD.TEXT_EMBEDDINGS",
            str(text_embeddings),
            "MODEL.VILD.ENSEMBLE",
            ensemble,
            "MODEL.VILD.DISTILL.ENABLED",
            distill,
            "MODEL.VILD.DISTILL.ROIS_PER_IMAGE",
            8,
            "DATASETS.TRAIN",
            (train,),
            "DATASETS.TEST",
            (test,),
            "INPUT.MIN_SIZE_TRAIN",
            (64,),
            "INPUT.MAX_SIZE_TRAIN",
            64,
            "INPUT.MIN_SIZE_TEST",
            64,
            "INPUT.MAX_SIZE_TEST",
            64,
            "INPUT.FORMAT",
            "RGB",
            "DATALOADER.NUM_WORKERS",
            0,
            "DATALOADER.ASPECT_RATIO_GROUPING",
            False,
            "SOLVER.IMS_PER_BATCH",
            2,
            "SOLVER.BASE_LR",
            0.01,
            "SOLVER.MAX_ITER",
            4,
            "SOLVER.STEPS",
            (),
            "SOLVER.WARMUP_ITERS",
            0,
            "SOLVER.CHECKPOINT_PERIOD",
            2,
            "TEST.DETECTIONS_PER_IMAGE",
            20,
            "TEST.EVAL_PERIOD",
            0,
            "SEED",
            0,
            "OUTPUT_DIR",
            str(output_dir),
        ]
    )
    return resolve_training_classes(cfg)


def write_random_text_encoder(
    path: str | os.PathLike,
    *,
    dim: int = 16,
    width: int = 16,
    context_length: int = 16,
    seed: int = 0,
    fingerprint: str = "random-test-teacher",
) -> Path:
    """A random-init pseudo-word text encoder file (``distill.text_encoder``) for model tests."""
    torch.manual_seed(seed)
    encoder = PseudoTextEncoder(
        TextEncoderConfig(
            width=width, layers=1, heads=2, context_length=context_length, embed_dim=dim
        )
    )
    with torch.no_grad():
        for param in encoder.parameters():
            param.normal_(0.0, 0.2)
    return save_text_encoder(path, encoder, teacher_fingerprint=fingerprint)


class StubTeacher:
    """A fixed random "teacher" for model tests: crop embeddings from mean colours, dense tokens from a
    random 1x1 projection of 8x8-pooled pixels (``OnlineTeacher`` interface)."""

    def __init__(
        self, *, dim: int = 16, fingerprint: str = "random-test-teacher", seed: int = 0
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(dim, 3, generator=generator)
        self.embed_dim, self.fingerprint = dim, fingerprint
        self.calls: list[str] = []

    def region_embeddings(
        self, images, boxes, *, mode: str = "crop", scales=(1.0,)
    ) -> list[torch.Tensor]:
        self.calls.append(mode)
        out = []
        for image, bx in zip(images, boxes):
            rows = []
            for x1, y1, x2, y2 in bx.tolist():
                if not (x2 > x1 and y2 > y1):
                    raise ValueError(f"degenerate box {[x1, y1, x2, y2]}")
                crop = image[
                    :, int(y1) : max(int(y2), int(y1) + 1), int(x1) : max(int(x2), int(x1) + 1)
                ].float()
                rows.append(self.weight @ (crop.mean(dim=(1, 2)) / 255.0 - 0.5))
            out.append(
                torch.nn.functional.normalize(torch.stack(rows), dim=-1)
                if rows
                else torch.zeros(0, self.embed_dim)
            )
        return out

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append("dense")
        pixels = torch.nn.functional.avg_pool2d(images.float() / 255.0 - 0.5, 8)
        return torch.einsum("dc,bchw->bdhw", self.weight, pixels)

    def crop_tokens(self, images, boxes) -> list[torch.Tensor]:
        """Per box a ``[D, 4, 4]`` map: the random projection of the box's crop pooled to 4x4."""
        self.calls.append("crop_tokens")
        out = []
        for image, bx in zip(images, boxes):
            rois = torch.cat([torch.zeros(bx.shape[0], 1), bx.float().cpu()], dim=1)
            crops = roi_align(image[None].float() / 255.0 - 0.5, rois, 4, aligned=True)
            out.append(torch.einsum("dc,kchw->kdhw", self.weight, crops))
        return out


def tiny_baron_config(
    *,
    train: str,
    test: str,
    text_embeddings: str | os.PathLike,
    text_encoder: str | os.PathLike,
    output_dir: str | os.PathLike,
    ensemble: bool = False,
) -> CfgNode:
    """:func:`tiny_vild_config` switched to BARON (1 pseudo word per region, small queues)."""
    cfg = tiny_vild_config(
        train=train,
        test=test,
        text_embeddings=text_embeddings,
        output_dir=output_dir,
        ensemble=ensemble,
    )
    cfg.merge_from_list(
        [
            "MODEL.META_ARCHITECTURE",
            "BaronRCNN",
            "MODEL.ROI_HEADS.NAME",
            "BaronROIHeads",
            "MODEL.BARON.TEXT_ENCODER",
            str(text_encoder),
            "MODEL.BARON.NUM_WORDS",
            1,
            "MODEL.BARON.QUEUE_SIZE",
            32,
            "MODEL.BARON.POS_EMBED_FEATS",
            8,
            "MODEL.BARON.SAMPLING.TOPK",
            20,
            "MODEL.VILD.TEMPERATURE",
            0.02,
        ]
    )
    return cfg


TINY_TOY_OPTS = (
    "DATASETS.TOY.OVERRIDES",
    "['n_train=8','n_val=4','n_captions=96','image_size=64']",
    "MODEL.VILD.TEACHER.TOY_OVERRIDES",
    "['epochs=1','max_captions=96','vit_width=32','vit_layers=1','text_width=32','text_layers=1','embed_dim=32',"
    "'image_size=32','batch_size=32']",
    "MODEL.BASIC_RESNET.DEPTH",
    "10",
    "MODEL.BASIC_RESNET.WIDTH",
    "8",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "64",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "6",
    "SOLVER.STEPS",
    "(4,)",
    "SOLVER.WARMUP_ITERS",
    "2",
    "SOLVER.CHECKPOINT_PERIOD",
    "3",
)
"""``KEY VALUE`` overrides shrinking a toy config to a few-second run: an 8-image world of 64 px, a one-epoch
teacher, a width-8 ResNet-10, 6 iterations with checkpoints every 3 (integration tests)."""


def toy_run_args(config: str, output_dir: Path, *opts: str, flags: Sequence[str] = ()):
    """``tools/train_net.py`` arguments for ``config`` with :data:`TINY_TOY_OPTS` + ``opts``; the toy world
    lives next to ``output_dir`` (``<parent>/world``)."""
    return argument_parser().parse_args(
        [
            "--config",
            config,
            *flags,
            *TINY_TOY_OPTS,
            "DATASETS.TOY.ROOT",
            str(Path(output_dir).parent / "world"),
            "OUTPUT_DIR",
            str(output_dir),
            *opts,
        ]
    )


def final_weights(output_dir: Path) -> dict:
    """The model state of ``OUTPUT_DIR/model_final.pth``."""
    return torch.load(Path(output_dir) / "model_final.pth", map_location="cpu", weights_only=False)[
        "model"
    ]


def check_resume_and_eval_only(config: str, root: Path, *opts: str, interrupt_at: int = 2) -> dict:
    """Train ``config`` uninterrupted (``root/full``) and interrupted after iteration ``interrupt_at`` then
    resumed (``root/part``); assert identical final weights and metrics, and that ``--eval-only``
    reproduces the metrics. Returns the metrics."""

    class Interrupt(HookBase):
        def after_step(self) -> None:
            if self.trainer.iter == interrupt_at:
                raise RuntimeError("simulated interruption")

    full, part = Path(root) / "full", Path(root) / "part"
    main(toy_run_args(config, full, *opts))
    trainer = build_trainer(setup(toy_run_args(config, part, *opts)))
    trainer.register_hooks([Interrupt()])
    trainer.resume_or_load(resume=False)
    try:
        trainer.train()
    except RuntimeError as err:
        if "simulated interruption" not in str(err):
            raise
    else:
        raise AssertionError("the interrupted run did not stop")
    assert not (part / "model_final.pth").exists()
    main(toy_run_args(config, part, *opts, flags=["--resume"]))
    a, b = final_weights(full), final_weights(part)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed run differs in {differ[:5]}"
    metrics = read_metrics(full)
    assert read_metrics(part) == metrics
    (part / "ov_metrics.json").unlink()
    main(toy_run_args(config, part, *opts, flags=["--eval-only"]))
    assert read_metrics(part) == metrics
    return metrics
