"""CLIP-ES student plug-ins: a standard MMSeg ``EncoderDecoder`` trained on CLIP-ES pseudo-masks.

The confidence-guided loss needs no model code: ``tools/make_pseudo_masks.py`` writes ``masks/`` with
255 wherever the teacher's confidence is below the threshold, and MMSeg's cross-entropy ignores 255.

* ``PseudoMaskDataset`` (DATASETS): images + a ``make_pseudo_masks`` output directory as seg maps; classes
  and palette from its ``classes.json``; refuses a missing or unfinished directory with the command to run.
* ``DeepLabV2Head`` (MODELS): DeepLabV2's parallel atrous 3x3 branches (summed) + a plain 1x1 classifier,
  the head CLIP-ES trains on VOC (MMSeg ships DeepLabV3/V3+ only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from mmcv.cnn import ConvModule
from mmseg.datasets import BaseSegDataset
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import DATASETS, MODELS
from torch import Tensor, nn

__all__ = ["PseudoMaskDataset", "DeepLabV2Head", "read_pseudo_mask_dir"]


def read_pseudo_mask_dir(path: str | Path, *, require_complete: bool = True) -> dict:
    """Manifest and classes of a ``tools/make_pseudo_masks.py`` output directory.

    Raises:
        FileNotFoundError: no manifest / classes (the directory was never generated).
        ValueError: unfilled config placeholder, corrupt JSON, or an unfinished run.
    """
    path = Path(path)
    if str(path).startswith("<") or "<work_dir>" in str(path) or "<toy_world>" in str(path):
        raise ValueError(
            f"pseudo-mask directory {str(path)!r} still holds a config placeholder: run the config "
            f"through tools/train_seg.py / tools/test_seg.py or set it"
        )
    manifest_path, classes_path = path / "manifest.json", path / "classes.json"
    if not manifest_path.is_file() or not classes_path.is_file():
        raise FileNotFoundError(
            f"no CLIP-ES pseudo-masks in {path} (missing {manifest_path.name}/{classes_path.name}):"
            f" run tools/make_pseudo_masks.py ... --out {path} first"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        classes = json.loads(classes_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: corrupt manifest.json/classes.json ({err}); rerun tools/make_pseudo_masks.py "
            f"--overwrite"
        ) from err
    if require_complete and not manifest.get("complete"):
        raise ValueError(
            f"pseudo-masks in {path} are incomplete (interrupted or --limit run): rerun "
            f"tools/make_pseudo_masks.py with the same arguments and no --limit (it resumes)"
        )
    return {"manifest": manifest, "classes": classes}


@DATASETS.register_module()
class PseudoMaskDataset(BaseSegDataset):
    """Training images paired with CLIP-ES pseudo-masks.

    Every ``<stem>.png`` in ``<pseudo_masks>/masks`` is one sample; its image is
    ``<data_root>/<img_path>/<stem><img_suffix>``.

    Args:
        pseudo_masks: the ``make_pseudo_masks`` output directory (absolute, or relative to the cwd).
        data_root: dataset root; ``img_path`` is relative to it.
        img_path: image directory under ``data_root``.
        img_suffix: image file suffix (".jpg" VOC, ".png" toy world).
        masks_subdir: "masks" (confidence-thresholded, 255 = ignore) or "labels" (dense, no ignore).
        require_complete: refuse an unfinished pseudo-mask run.
        metainfo: optional; its ``classes`` must equal the pseudo-masks' classes.
        **kwargs: ``BaseSegDataset`` arguments (pipeline, ...).
    """

    METAINFO: dict = dict()

    def __init__(
        self,
        *,
        pseudo_masks: str,
        data_root: str = "",
        img_path: str = "",
        img_suffix: str = ".jpg",
        masks_subdir: str = "masks",
        require_complete: bool = True,
        metainfo: dict | None = None,
        **kwargs,
    ) -> None:
        if masks_subdir not in ("masks", "labels"):
            raise ValueError(f"masks_subdir must be 'masks' or 'labels', got {masks_subdir!r}")
        info = read_pseudo_mask_dir(pseudo_masks, require_complete=require_complete)
        classes = info["classes"]
        meta = {"classes": tuple(classes["classes"])}
        if classes.get("palette"):
            meta["palette"] = [list(p) for p in classes["palette"]]
        extra = dict(metainfo or {})
        if "classes" in extra and list(extra.pop("classes")) != list(classes["classes"]):
            raise ValueError(
                f"{pseudo_masks}/classes.json lists classes {classes['classes']}, which differ from the "
                f"config's metainfo classes"
            )
        meta.update(extra)
        self.pseudo_masks = str(Path(pseudo_masks).resolve())
        kwargs.setdefault("ignore_index", int(classes.get("ignore_index", 255)))
        super().__init__(
            data_root=data_root,
            img_suffix=img_suffix,
            seg_map_suffix=".png",
            metainfo=meta,
            data_prefix=dict(
                img_path=img_path, seg_map_path=str(Path(self.pseudo_masks) / masks_subdir)
            ),
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        """One sample per pseudo-mask, sorted by name; every mask needs its image."""
        img_dir = Path(self.data_prefix["img_path"])
        seg_dir = Path(self.data_prefix["seg_map_path"])
        if not seg_dir.is_dir():
            raise FileNotFoundError(
                f"PseudoMaskDataset: pseudo-mask directory not found: {seg_dir}"
            )
        masks = sorted(p for p in seg_dir.iterdir() if p.suffix == ".png")
        if not masks:
            raise FileNotFoundError(f"PseudoMaskDataset: no .png pseudo-masks in {seg_dir}")
        data = []
        for mask in masks:
            image = img_dir / f"{mask.stem}{self.img_suffix}"
            if not image.is_file():
                raise FileNotFoundError(
                    f"PseudoMaskDataset: image {image} not found for pseudo-mask {mask}"
                )
            data.append(
                dict(
                    img_path=str(image),
                    seg_map_path=str(mask),
                    label_map=self.label_map,
                    reduce_zero_label=self.reduce_zero_label,
                    seg_fields=[],
                )
            )
        return data


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """DeepLabV2: parallel 3x3 atrous convolutions (``in_channels -> channels``) summed, then ``cls_seg``.

    Args:
        dilations: dilation of each branch (VOC, stride 8: 6/12/18/24).
        **kwargs: ``BaseDecodeHead`` arguments (``norm_cfg`` / ``act_cfg`` apply to every branch).
    """

    def __init__(self, *, dilations: Sequence[int] = (6, 12, 18, 24), **kwargs) -> None:
        super().__init__(**kwargs)
        if not dilations:
            raise ValueError("dilations must not be empty")
        self.dilations = tuple(int(d) for d in dilations)
        self.branches = nn.ModuleList(
            ConvModule(
                self.in_channels,
                self.channels,
                3,
                padding=d,
                dilation=d,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg,
            )
            for d in self.dilations
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)
        return self.cls_seg(torch.stack([branch(x) for branch in self.branches]).sum(dim=0))
