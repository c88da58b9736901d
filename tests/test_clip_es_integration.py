"""Integration: CLIP-ES end to end through the tools on a TINY generated toy world with a tiny random-init ViT
teacher: tools/make_pseudo_masks.py (with and without CAA, scored against ground truth, resumed), then the
student config through tools/train_seg.py / tools/test_seg.py for a few real iterations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """An 8 + 4 image toy world (64 px) and a random-init tiny CLIP teacher (config JSON + checkpoint)."""
    from distill.teachers import ClipTeacher
    from distill.toy import ensure_toy_world

    root = tmp_path_factory.mktemp("clip_es_tiny")
    world = ensure_toy_world(
        root=root / "world", n_train=8, n_val=4, n_captions=1, image_size=64, progress=False
    )
    config = root / "ovd-clip-es-it-tiny-vit.json"
    config.write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    teacher = ClipTeacher("ovd-clip-es-it-tiny-vit", model_config=config, allow_random_init=True)
    checkpoint = root / "tiny_clip.pt"
    torch.save(teacher.model.state_dict(), checkpoint)
    return {
        "world": world,
        "root": root,
        "env": {**os.environ, "OVDISTILL_CACHE": str(root / "cache")},
        "teacher": [
            "--model",
            "ovd-clip-es-it-tiny-vit",
            "--pretrained",
            str(checkpoint),
            "--model-config",
            str(config),
        ],
    }


def run_tool(
    tool: str, *args: str, env: dict | None = None, ok: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if ok:
        assert proc.returncode == 0, f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pseudo_args(tiny: dict, out: Path, *extra: str) -> list[str]:
    world = tiny["world"]
    return [
        "--labels",
        str(world.image_labels_json("train")),
        "--images",
        str(world.image_dir("train")),
        "--out",
        str(out),
        "--gt",
        str(world.seg_dir("train")),
        "--templates",
        "a photo of a {}.",
        "--background",
        "empty background",
        "--confidence-threshold",
        "0.5",
        "--no-progress",
        *tiny["teacher"],
        *extra,
    ]


@pytest.fixture(scope="module")
def pseudo(tiny) -> dict:
    """Pseudo-masks with CAA (the student's training set) and without."""
    out = {}
    for name, flags in (("caa", []), ("gradcam", ["--no-caa"])):
        proc = run_tool(
            "make_pseudo_masks.py",
            *pseudo_args(tiny, tiny["root"] / f"pseudo_{name}", *flags),
            env=tiny["env"],
        )
        out[name] = last_json(proc)
    return out


def test_pseudo_masks_scored_and_mmseg_ready(tiny, pseudo):
    for result in pseudo.values():
        assert result["images"] == 8 and result["computed"] == 8, result
        assert 0 <= result["miou"] <= 100 and 0 <= result["coverage"] <= 100
    assert pseudo["caa"]["caa"] is True and pseudo["gradcam"]["caa"] is False
    out = tiny["root"] / "pseudo_caa"
    world = tiny["world"]
    labels = json.loads(world.image_labels_json("train").read_text())["images"]
    for entry in labels:
        with Image.open(out / "masks" / entry["file_name"]) as mask:
            assert mask.mode == "P" and mask.size == (64, 64)
            values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= {0, 255, *entry["labels"]}, (entry, values)
        confidence = np.asarray(Image.open(out / "confidence" / entry["file_name"]))
        assert confidence.dtype == np.uint8 and confidence.shape == (64, 64)
        dense = np.asarray(Image.open(out / "labels" / entry["file_name"]))
        keep = confidence >= round(0.5 * 255)
        assert np.array_equal(
            np.asarray(Image.open(out / "masks" / entry["file_name"]))[keep], dense[keep]
        )


def test_pseudo_masks_resume_skips_finished_images(tiny, pseudo):
    out = tiny["root"] / "pseudo_caa"
    (out / "labels" / "000003.png").unlink()
    result = last_json(run_tool("make_pseudo_masks.py", *pseudo_args(tiny, out), env=tiny["env"]))
    assert (result["computed"], result["skipped"]) == (1, 7)
    assert result["miou"] == pseudo["caa"]["miou"]  # deterministic recompute


def test_bad_labels_fail_naming_the_image(tiny, tmp_path):
    world = tiny["world"]
    data = json.loads(world.image_labels_json("train").read_text())
    data["images"][2]["labels"] = []
    bad = tmp_path / "empty.json"
    bad.write_text(json.dumps(data))
    args = pseudo_args(tiny, tmp_path / "out")
    args[args.index("--labels") + 1] = str(bad)
    proc = run_tool("make_pseudo_masks.py", *args, env=tiny["env"], ok=False)
    assert proc.returncode != 0 and "image 3 (000003.png): empty label list" in proc.stderr
    data["images"][2]["labels"] = [1, 42]
    bad.write_text(json.dumps(data))
    proc = run_tool("make_pseudo_masks.py", *args, env=tiny["env"], ok=False)
    assert (
        proc.returncode != 0
        and "image 3 (000003.png): labels [42] are not in the vocabulary" in proc.stderr
    )


def test_student_trains_on_pseudo_masks_and_evaluates(tiny, pseudo, tmp_path):
    loader = "dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))"
    cfg = tmp_path / "clip_es_tiny.py"
    cfg.write_text(
        "\n".join(
            [
                f"_base_ = [{str(REPO / 'configs' / 'seg' / 'toy' / 'clip_es.py')!r}]",
                "toy_world = False",
                f"data_root = {str(tiny['world'].root)!r}",
                f"train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict("
                f"data_root=data_root, pseudo_masks={str(tiny['root'] / 'pseudo_caa')!r}))",
                f"val_dataloader = {loader}",
                f"test_dataloader = {loader}",
                "train_cfg = dict(max_iters=4, val_interval=4)",
                "param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=4, by_epoch=False)]",
                "default_hooks = dict(checkpoint=dict(interval=4), logger=dict(interval=1))",
                "env_cfg = dict(cudnn_benchmark=False)",
            ]
        )
        + "\n"
    )
    work = tmp_path / "work"
    train = run_tool("train_seg.py", str(cfg), "--work-dir", str(work), env=tiny["env"])
    assert "Iter(train) [4/4]" in train.stdout + train.stderr
    checkpoint = (work / "last_checkpoint").read_text().strip()
    metrics = last_json(
        run_tool(
            "test_seg.py", str(cfg), checkpoint, "--work-dir", str(work / "test"), env=tiny["env"]
        )
    )
    assert 0 <= metrics["mIoU"] <= 100


def test_toy_table_tool_help():
    proc = run_tool("clip_es_toy_table.py", "--help")
    assert "pseudo-masks" in proc.stdout
