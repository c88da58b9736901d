"""Integration: the toy configs through tools/train_seg.py and tools/test_seg.py (real mmengine Runner) on a
TINY generated world with a tiny random-init teacher; resume through the tools."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
KEYS = ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 8 + 4 image toy world (64 px) and a random-init tiny CLIP teacher checkpoint."""
    from distill.teachers import ClipTeacher
    from distill.toy import ensure_toy_world

    root = tmp_path_factory.mktemp("seg_tiny")
    world = ensure_toy_world(
        root=root / "world", n_train=8, n_val=4, n_captions=1, image_size=64, progress=False
    )
    config = root / "ovd-seg-it-tiny-vit.json"
    config.write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    teacher = ClipTeacher("ovd-seg-it-tiny-vit", model_config=config, allow_random_init=True)
    checkpoint = root / "tiny_clip.pt"
    torch.save(teacher.model.state_dict(), checkpoint)
    return {
        "world": str(world.root),
        "teacher": dict(
            type="clip",
            model_name="ovd-seg-it-tiny-vit",
            pretrained=str(checkpoint),
            model_config=str(config),
        ),
    }


def write_config(
    path: Path,
    base: str,
    tiny: dict,
    *,
    iters: int = 4,
    train: bool = True,
    model_teacher: bool = True,
) -> Path:
    """A config inheriting ``configs/seg/toy/<base>`` pointed at the tiny world/teacher, few iterations."""
    loader = "dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))"
    lines = [
        f"_base_ = [{str(REPO / 'configs' / 'seg' / 'toy' / base)!r}]",
        "toy_world = False",
        f"teacher = dict({tiny['teacher']!r}, _delete_=True)  # replaces the toy ResNet teacher wholesale",
        f"data_root = {tiny['world']!r}",
        f"test_dataloader = {loader}",
        "env_cfg = dict(cudnn_benchmark=False)",
    ]
    if train:
        lines += [
            f"train_dataloader = {loader}",
            f"val_dataloader = {loader}",
            f"train_cfg = dict(max_iters={iters}, val_interval={iters})",
            f"param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end={iters}, "
            f"by_epoch=False)]",
            "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))",
        ]
    if model_teacher:
        lines.append("model = dict(teacher=dict(teacher, _delete_=True))")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_tool(tool: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_maskclip_zero_shot_through_test_tool(tiny, tmp_path):
    cfg = write_config(tmp_path / "maskclip.py", "maskclip.py", tiny, train=False)
    metrics = last_json(run_tool("test_seg.py", str(cfg), "--work-dir", str(tmp_path / "wd")))
    assert set(KEYS) <= set(metrics)
    assert 0.0 <= metrics["mIoU"] <= 100.0


@pytest.mark.parametrize("base", ["maskclip_plus.py", "lseg.py"])
def test_students_train_then_evaluate_through_tools(tiny, tmp_path, base):
    cfg = write_config(tmp_path / base, base, tiny, model_teacher=base == "maskclip_plus.py")
    work = tmp_path / "wd"
    proc = run_tool("train_seg.py", str(cfg), "--work-dir", str(work))
    assert (work / "text_embeddings.pt").is_file()  # written by the tool
    assert re.search(r"mIoU_unseen: \S+", proc.stdout + proc.stderr)  # validation ran in the loop
    checkpoint = (work / "last_checkpoint").read_text().strip()
    assert checkpoint.endswith("iter_4.pth")
    metrics = last_json(
        run_tool("test_seg.py", str(cfg), checkpoint, "--work-dir", str(tmp_path / "test"))
    )
    assert set(KEYS) <= set(metrics)


def test_resume_through_train_tool(tiny, tmp_path):
    cfg = write_config(tmp_path / "plus.py", "maskclip_plus.py", tiny, iters=4)
    work = tmp_path / "wd"
    env = {
        k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    }  # the tool sets it
    run_tool(
        "train_seg.py",
        str(cfg),
        "--work-dir",
        str(work),
        "--cfg-options",
        "train_cfg.max_iters=2",
        env=env,
    )
    assert (work / "iter_2.pth").is_file() and not (work / "iter_4.pth").exists()
    proc = run_tool("train_seg.py", str(cfg), "--work-dir", str(work), "--resume", env=env)
    log = proc.stdout + proc.stderr
    assert "resumed" in log.lower()
    assert (
        "Iter(train) [4/4]" in log and "Iter(train) [1/4]" not in log
    )  # continued from iteration 2
    state = torch.load(work / "iter_4.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["iter"] == 4
    assert int(state["state_dict"]["train_iter"]) == 4  # MaskCLIP+'s counter survived
