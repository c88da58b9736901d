"""CLIP-ES student plug-ins (segmentors.clip_es): the pseudo-mask dataset and the DeepLabV2 head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmseg.models")

from segmentors.clip_es import DeepLabV2Head, PseudoMaskDataset  # noqa: E402


def _pseudo_dir(
    root: Path, *, complete: bool = True, missing_image: bool = False
) -> tuple[Path, Path]:
    images, pseudo = root / "images", root / "pseudo"
    (pseudo / "masks").mkdir(parents=True)
    images.mkdir()
    for i in range(3):
        if not (missing_image and i == 1):
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / f"{i:06d}.png")
        Image.fromarray(np.full((16, 16), 255 if i else 1, np.uint8)).save(
            pseudo / "masks" / f"{i:06d}.png"
        )
    (pseudo / "manifest.json").write_text(json.dumps({"version": 1, "complete": complete}))
    (pseudo / "classes.json").write_text(
        json.dumps(
            {
                "classes": ["background", "circle"],
                "ignore_index": 255,
                "palette": [[0, 0, 0], [128, 0, 0]],
            }
        )
    )
    return images, pseudo


def test_pseudo_mask_dataset_pairs_masks_with_images(tmp_path):
    images, pseudo = _pseudo_dir(tmp_path)
    ds = PseudoMaskDataset(
        pseudo_masks=str(pseudo),
        data_root=str(tmp_path),
        img_path="images",
        img_suffix=".png",
        pipeline=[],
    )
    assert len(ds) == 3 and ds.metainfo["classes"] == ("background", "circle")
    info = ds.get_data_info(1)
    assert info["img_path"] == str(images / "000001.png")
    assert info["seg_map_path"] == str((pseudo / "masks" / "000001.png").resolve())


def test_pseudo_mask_dataset_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run tools/make_pseudo_masks.py"):
        PseudoMaskDataset(
            pseudo_masks=str(tmp_path / "nothing"), data_root=str(tmp_path), img_path="images"
        )
    with pytest.raises(ValueError, match="placeholder"):
        PseudoMaskDataset(
            pseudo_masks="<work_dir>/pseudo_masks", data_root=str(tmp_path), img_path="images"
        )
    _, pseudo = _pseudo_dir(tmp_path / "a", complete=False)
    with pytest.raises(ValueError, match="incomplete"):
        PseudoMaskDataset(
            pseudo_masks=str(pseudo), data_root=str(tmp_path / "a"), img_path="images"
        )
    _, pseudo = _pseudo_dir(tmp_path / "b", missing_image=True)
    with pytest.raises(FileNotFoundError, match="000001.png not found for pseudo-mask"):
        PseudoMaskDataset(
            pseudo_masks=str(pseudo),
            data_root=str(tmp_path / "b"),
            img_path="images",
            img_suffix=".png",
            pipeline=[],
        )


def test_deeplabv2_head_sums_branches():
    torch.manual_seed(0)
    head = DeepLabV2Head(
        in_channels=8,
        channels=4,
        num_classes=3,
        dilations=(1, 2),
        in_index=0,
        dropout_ratio=0.0,
        norm_cfg=None,
        act_cfg=None,
    )
    x = torch.randn(2, 8, 6, 6)
    logits = head([x])
    branches = sum(b(x) for b in head.branches)
    torch.testing.assert_close(logits, head.conv_seg(branches))
    assert logits.shape == (2, 3, 6, 6)
